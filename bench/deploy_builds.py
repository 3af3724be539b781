"""A/B of deploy-time builds between two source trees: seconds to deploy a brand-new Go function and a brand-new
`requirements.txt` (numpy), same run.

Each round starts one node per variant (a fresh data dir), deploys a first Go function (which warms whatever
the variant caches per data dir or per host: the shared Go build cache before deploy/isolate.py, the precompiled
standard library after), then times the deploy of a second Go function (other code: a new build) and of a
Python function whose requirements.txt is new to the node (a comment makes the hash new; the package comes from
the machine's index). The order of the variants is swapped every round; medians are printed.

A variant is a source directory put first on PYTHONPATH for its node:

    mkdir /tmp/base && git archive main src | tar -x -C /tmp/base   # the version to compare against
    .venv/bin/python bench/deploy_builds.py /tmp/base/src src --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import PolyfnServer

GO = ('package main\nimport ("fmt"; "net/http"; "os")\nfunc main() { http.HandleFunc("/", func(w http.ResponseWriter, '
      'r *http.Request){ fmt.Fprint(w, "R%d") }); http.ListenAndServe(":"+os.Getenv("PORT"), nil) }\n')


def one_round(src: str, n: int, package: str) -> tuple[float, float]:
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
        return go, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="source directory A (e.g. /tmp/base/src)")
    ap.add_argument("b", help="source directory B (e.g. src)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--package", default="numpy", help="what requirements.txt installs (default numpy)")
    args = ap.parse_args()
    times: dict[str, dict[str, list[float]]] = {v: {"go": [], "pip": []} for v in (args.a, args.b)}
    for r in range(args.rounds):
        for v in (args.a, args.b) if r % 2 == 0 else (args.b, args.a):
            go, pip = one_round(v, r, args.package)
            times[v]["go"].append(go)
            times[v]["pip"].append(pip)
            print(f"round {r} {v}: go {go:.2f} s, pip {pip:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    for v, t in times.items():
        print(f"{v}: median go {statistics.median(t['go']):.2f} s, pip {statistics.median(t['pip']):.2f} s")
    a, b = times[args.a], times[args.b]
    print(f"B/A: go {statistics.median(b['go']) / statistics.median(a['go']):.2f}x, "
          f"pip {statistics.median(b['pip']) / statistics.median(a['pip']):.2f}x")


if __name__ == "__main__":
    main()
