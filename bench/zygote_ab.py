"""A/B of a cold start from a function's zygote between source trees: one node per variant at once, samples alternated.

The zygote row of `bench/coldstart.py` moves by a millisecond between runs on a busy machine, more than the
changes it is meant to judge. This starts one `polyfn serve` per variant (a source directory put first on
PYTHONPATH: the server, its zygotes and their instances import polyfn from it), deploys the same trivial
function on each, waits for its function zygote and then takes samples in turns: kill the function's
instance (SIGKILL, wait until its pool forgot it), wait `--settle`, time `GET` → response client-side over a
persistent connection (TCP setup not counted; the response must say `x-polyfn-cold: true`). The server's
`init_ms` of each sample is read back from its activation. On a busy machine the p50 is mostly the other
processes' scheduling; the lower quantiles (p10, p25) are the samples that ran unhindered, the nearest to a
quiet machine's figures.

    git archive HEAD src | tar -x -C /tmp/base      # the version to compare against
    .venv/bin/python bench/zygote_ab.py /tmp/base/src src
    .venv/bin/python bench/zygote_ab.py /tmp/base/src src -n 80 --settle 0.2
    .venv/bin/python bench/zygote_ab.py /tmp/base/src src --revision    # also: a new revision's first start

`--revision` adds, after each sample, a new revision's first start of a second function on the same node
(redeploy → `GET` at once: its zygote built at deploy), as `bench/coldstart.py`'s second row, and prints it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import Http, PolyfnServer, fmt, percentile, print_header, table
from coldstart import kill_instances, revision_sample, wait_zygote

HANDLER = "def handler(event, context):\n    return 'Hello World!'\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="source directories (the first is the reference)")
    ap.add_argument("-n", "--samples", type=int, default=40, help="samples per variant")
    ap.add_argument("--settle", type=float, default=0.1, help="seconds between the kill and the GET")
    ap.add_argument("--revision", action="store_true", help="also a new revision's first start (redeploy → GET)")
    args = ap.parse_args()
    print_header("cold start from a function's zygote, A/B of source trees (same run, samples alternated)")
    servers: list[tuple[str, PolyfnServer, Http]] = []
    ms: dict[str, list[float]] = {}
    init: dict[str, list[float]] = {}
    rev: dict[str, list[float]] = {}
    load = [os.getloadavg()[0]]
    try:
        for v in args.variants:
            server = PolyfnServer(env={"PYTHONPATH": str(Path(v).resolve())}).__enter__()
            servers.append((v, server, Http(server.port)))
            server.deploy("zab", {"handler.py": HANDLER})
            status, _, body = servers[-1][2].request("GET", "/fn/zab")  # its first start builds the zygote
            if status != 200:
                raise RuntimeError(f"{v}: {status} {body[:300]!r}")
            wait_zygote(server, "zab")
            if args.revision:  # served, so its redeploys build their zygote at deploy
                server.deploy("zrev", {"handler.py": HANDLER})
                servers[-1][2].request("GET", "/fn/zrev")
            ms[v], init[v], rev[v] = [], [], []
        for _, server, client in servers:  # (idle through the other variants' start: the server may have closed them)
            for http in (client, server.api):
                http.conn.close()  # type: ignore[union-attr]
                http.request("GET", "/healthz")  # type: ignore[union-attr]
        for i in range(-2, args.samples):  # -2, -1: unmeasured warm-up
            for v, server, client in servers if i % 2 == 0 else servers[::-1]:
                kill_instances(server, "zab")
                time.sleep(args.settle)
                t0 = time.perf_counter()
                status, headers, body = client.request("GET", "/fn/zab")
                elapsed = (time.perf_counter() - t0) * 1000
                if status != 200 or headers.get("x-polyfn-cold") != "true":
                    raise RuntimeError(f"{v}: {status} {headers.get('x-polyfn-cold')} {body[:300]!r}")
                if i >= 0:
                    ms[v].append(elapsed)
                    act = server.api.json("GET", f"/v1/activations/{headers.get('x-polyfn-activation-id')}")  # type: ignore[union-attr]
                    init[v].append(act.get("init_ms") or 0.0)  # type: ignore[union-attr]
                if args.revision:
                    first = revision_sample(server, "hello", "zrev", i, 0.0, client)[1]
                    if i >= 0:
                        rev[v].append(first)
            load.append(os.getloadavg()[0])
    finally:
        for _, server, client in servers:
            client.close()
            server.__exit__(None, None, None)
    ref = percentile(ms[args.variants[0]], 50)
    rows = [[v, str(len(ms[v])), fmt(min(ms[v])), fmt(percentile(ms[v], 10)), fmt(percentile(ms[v], 25)),
             fmt(percentile(ms[v], 50)), fmt(percentile(ms[v], 90)),
             fmt(percentile(ms[v], 99)), fmt(percentile(init[v], 50)), f"{percentile(ms[v], 50) / ref:.2f}×"]
            for v in args.variants]
    print("client-side milliseconds (kill the instance → GET); ratio = the variant's p50 / the first's\n")
    print(table(["variant", "n", "min", "p10", "p25", "p50", "p90", "p99", "init_ms p50", "ratio"], rows))
    if args.revision:
        ref = percentile(rev[args.variants[0]], 50)
        print("\nclient-side milliseconds, a new revision's first start (redeploy → GET at once)\n")
        print(table(["variant", "n", "min", "p25", "p50", "p90", "p99", "ratio"],
                    [[v, str(len(rev[v])), fmt(min(rev[v])), fmt(percentile(rev[v], 25)), fmt(percentile(rev[v], 50)),
                      fmt(percentile(rev[v], 90)), fmt(percentile(rev[v], 99)),
                      f"{percentile(rev[v], 50) / ref:.2f}×"] for v in args.variants]))
    print(f"\nload average (1 min) during the run: {min(load):.1f}–{max(load):.1f}")
    for v in args.variants:
        p50, p99 = percentile(ms[v], 50), percentile(ms[v], 99)
        print(f"target (issue 24) {v}: from its zygote p50 ≤ 1.5 ms, p99 ≤ 4 ms: {fmt(p50)} / {fmt(p99)} ms → "
              f"{'met' if p50 <= 1.5 and p99 <= 4 else 'NOT met'}")


if __name__ == "__main__":
    main()
