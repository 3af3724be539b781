"""A/B of deploy-time builds between two source trees: seconds to deploy a brand-new Go function and a brand-new
`requirements.txt` (numpy), same run.

Each round starts one node per variant (a fresh data dir), deploys a first Go function (which warms whatever
the variant caches per data dir or per host: the shared Go build cache before deploy/isolate.py, the precompiled
standard library after), then times the deploy of a second Go function (other code: a new build) and of a
Python function whose requirements.txt is new to the node (a comment makes the hash new; the package comes from
the machine's index). With `--csharp` (needs Mono), also the deploy of a new C# function (mcs, mono --aot and the
host's describe of a new assembly) and of a second function with that code (cached: describe only). The order of
the variants is swapped every round; medians are printed. `--pip-only` instead starts one node per variant for the
whole run and times `--rounds` deploys of a new requirements.txt on each, alternating (less noise from node starts).

A variant is a source directory put first on PYTHONPATH for its node:

    mkdir /tmp/base && git archive main src | tar -x -C /tmp/base   # the version to compare against
    .venv/bin/python bench/deploy_builds.py /tmp/base/src src --rounds 4 [--csharp]
    .venv/bin/python bench/deploy_builds.py /tmp/base/src src --rounds 10 --package six --pip-only
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import PolyfnServer

GO = ('package main\nimport ("fmt"; "net/http"; "os")\nfunc main() { http.HandleFunc("/", func(w http.ResponseWriter, '
      'r *http.Request){ fmt.Fprint(w, "R%d") }); http.ListenAndServe(":"+os.Getenv("PORT"), nil) }\n')


CS = ('public static class Fn%d {\n    [FunctionName("Fn")]\n    public static IActionResult Run([HttpTrigger('
      'AuthorizationLevel.Anonymous, "get")] HttpRequest req) {\n        return new OkObjectResult("R%d");\n    }\n}\n')


def csharp(node: PolyfnServer, n: int) -> tuple[float, float]:
    """(seconds to deploy a new C# function, seconds to deploy its code again under another name: cached)."""
    assert node.api is not None
    times = []
    for name in ("cs", "cs-again"):
        t = time.monotonic()
        node.api.json("POST", "/v1/functions", {"name": name, "files": {"Fn.cs": CS % (n, n)}})
        times.append(time.monotonic() - t)
    return times[0], times[1]


def one_round(src: str, n: int, package: str, cs: bool = False) -> tuple[float, ...]:
    with PolyfnServer(env={"PYTHONPATH": os.path.abspath(src)}) as node:
        assert node.api is not None
        node.api.conn.timeout = 900
        node.api.json("POST", "/v1/functions", {"name": "warm", "files": {"main.go": GO % (10_000 + n)},
                                                 "runtime": "http", "handler": "@go"})
        t = time.monotonic()
        node.api.json("POST", "/v1/functions", {"name": "go", "files": {"main.go": GO % n}, "runtime": "http",
                                               "handler": "@go"})
        go = time.monotonic() - t
        t = time.monotonic()
        node.api.json("POST", "/v1/functions", {"name": "pip", "files": {
            "handler.py": "def handler(event, context):\n    return 1\n",
            "requirements.txt": f"# {n} {time.time()}\n{package}\n"}})
        pip = time.monotonic() - t
        if cs:
            node.api.json("POST", "/v1/functions", {"name": "cs-warm", "files": {"Fn.cs": CS % (10_000 + n, n)}})
            return (go, pip, *csharp(node, n))
        return go, pip


def pip_only(variants: tuple[str, str], rounds: int, package: str) -> None:
    """`rounds` deploys of a new requirements.txt on one node per variant, alternating; medians and B/A."""
    times: dict[str, list[float]] = {v: [] for v in variants}
    with PolyfnServer(env={"PYTHONPATH": os.path.abspath(variants[0])}) as a, \
            PolyfnServer(env={"PYTHONPATH": os.path.abspath(variants[1])}) as b:
        nodes = {variants[0]: a, variants[1]: b}
        for r in range(rounds):
            for v in variants if r % 2 == 0 else variants[::-1]:
                api = nodes[v].api
                assert api is not None
                api.conn.close()  # (the other node's deploy may outlast the keep-alive)
                api.conn.timeout = 900
                t = time.monotonic()
                api.json("POST", "/v1/functions", {"name": f"pip{r}", "files": {
                    "handler.py": "def handler(event, context):\n    return 1\n",
                    "requirements.txt": f"# {r} {time.time()}\n{package}\n"}})
                times[v].append(time.monotonic() - t)
                print(f"round {r} {v}: pip {times[v][-1]:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    for v in variants:
        print(f"{v}: median pip {statistics.median(times[v]):.2f} s")
    print(f"B/A: pip {statistics.median(times[variants[1]]) / statistics.median(times[variants[0]]):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="source directory A (e.g. /tmp/base/src)")
    ap.add_argument("b", help="source directory B (e.g. src)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--package", default="numpy", help="what requirements.txt installs (default numpy)")
    ap.add_argument("--csharp", action="store_true", help="also time C# deploys: new code, and cached (needs Mono)")
    ap.add_argument("--pip-only", action="store_true", help="only pip deploys, on one node per variant for the run")
    args = ap.parse_args()
    if args.pip_only:
        pip_only((args.a, args.b), args.rounds, args.package)
        return
    cols = ["go", "pip", *(["cs", "cs-cached"] if args.csharp else [])]
    times: dict[str, dict[str, list[float]]] = {v: {c: [] for c in cols} for v in (args.a, args.b)}
    for r in range(args.rounds):
        for v in (args.a, args.b) if r % 2 == 0 else (args.b, args.a):
            got = one_round(v, r, args.package, args.csharp)
            for c, x in zip(cols, got, strict=True):
                times[v][c].append(x)
            print(f"round {r} {v}: " + ", ".join(f"{c} {x:.2f} s" for c, x in zip(cols, got, strict=True))
                  + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    for v, t in times.items():
        print(f"{v}: median " + ", ".join(f"{c} {statistics.median(t[c]):.2f} s" for c in cols))
    a, b = times[args.a], times[args.b]
    print("B/A: " + ", ".join(f"{c} {statistics.median(b[c]) / statistics.median(a[c]):.2f}x" for c in cols))


if __name__ == "__main__":
    main()
