"""Burst right after a revision's first call (issue 24, target 4's first half): 16 concurrent 100 ms calls sent
as soon as a new revision's first call has answered, while its function zygote may not be built yet.

Each round deploys the function (`--kind first`: a new function, deleted after the round; `redeploy`: a new
revision of a function that was already served here), calls it once, then opens 16 keep-alive connections
and sends one request on each at the same moment; the figure is the time until all 16 answered. The
handler imports numpy, carried as a user's would be: a `requirements.txt` the deploy installs (pip, from the
node's index, once: later revisions reuse its deps/SHA); if that install fails here, a set of stdlib modules
the runtime zygote does not preload (imported in ~20–40 ms, and the output says so); then it sleeps 100 ms.

    .venv/bin/python bench/burst_first.py                  # both kinds, 5 rounds each
    .venv/bin/python bench/burst_first.py --rounds 2 --kind redeploy
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Http, PolyfnServer, fmt, percentile, print_header, table
from burst import one_round

NUMPY = "import numpy\n"
REQUIREMENTS = {"requirements.txt": "numpy\n"}  # as a user ships it
STAND_IN = ("import sqlite3, xml.dom.minidom, unittest, pydoc, tarfile, zipfile, csv, statistics, fractions, pickle, "
            "tomllib, difflib, ftplib, smtplib, imaplib, mailbox, xmlrpc.client, wave, plistlib, configparser\n")
WORK = "import time\ndef handler(event, context):\n    time.sleep(%s)\n    return 'done'\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="bursts per kind")
    ap.add_argument("--requests", type=int, default=16, help="concurrent requests in the burst")
    ap.add_argument("--work", type=float, default=0.1, help="seconds of work (sleep) per request")
    ap.add_argument("--kind", choices=["first", "redeploy", "both"], default="both",
                    help="a new function's first revision, or a new revision of a served function")
    args = ap.parse_args()
    print_header("burst right after a revision's first call")
    kinds = ["first", "redeploy"] if args.kind == "both" else [args.kind]
    totals: dict[str, list[float]] = {k: [] for k in kinds}
    firsts: dict[str, list[float]] = {k: [] for k in kinds}
    with PolyfnServer(log_level="WARNING") as server:
        client = Http(server.port)
        try:
            server.deploy("probe", {"handler.py": NUMPY + "def handler(event, context):\n    return 'ok'\n",
                                    **REQUIREMENTS})
            status, _, _ = client.request("GET", "/fn/probe")
        except Exception:  # the install failed: no package index here
            status = 0
        head, extra = (NUMPY, REQUIREMENTS) if status == 200 else (STAND_IN, {})
        print(f"the handler imports {'numpy (requirements.txt)' if status == 200 else 'stdlib modules (numpy cannot be installed here)'}"
              f", then sleeps {args.work:g} s\n")
        server.api.json("DELETE", "/v1/functions/probe")  # type: ignore[union-attr]
        code = head + WORK % args.work
        served = False
        for i in range(-1, args.rounds):  # -1: unmeasured warm-up
            for kind in kinds:
                name = f"first{i + 1}" if kind == "first" else "again"
                if kind == "redeploy" and not served:  # a function this node has served
                    server.deploy(name, {"handler.py": code, **extra}, max_instances=64)
                    client.request("GET", f"/fn/{name}")
                    served = True
                server.deploy(name, {"handler.py": code + f"# round {i}\n", **extra}, max_instances=64)
                t0 = time.perf_counter()
                status, _, body = client.request("GET", f"/fn/{name}")
                first = (time.perf_counter() - t0) * 1000
                if status != 200:
                    raise RuntimeError(f"{name}: {status} {body[:300]!r}\n{server.log_tail()}")
                total, _, statuses = asyncio.run(one_round(server.port, args.requests, f"/fn/{name}"))
                if any(s != 200 for s in statuses):
                    raise RuntimeError(f"{name}: statuses {sorted(set(statuses))}\n{server.log_tail()}")
                if i >= 0:
                    totals[kind].append(total)
                    firsts[kind].append(first)
                if kind == "first":
                    server.api.json("DELETE", f"/v1/functions/{name}")  # type: ignore[union-attr]
                time.sleep(0.5)  # the previous round's instances idle, its zygote built
        client.close()
    label = {"first": "a new function's first revision", "redeploy": "a new revision of a served function"}
    rows = []
    for kind in kinds:
        xs = totals[kind]
        rows.append([label[kind], str(len(xs)), fmt(min(xs)), fmt(percentile(xs, 50)), fmt(max(xs)),
                     fmt(percentile(firsts[kind], 50))])
    print(table(["after the first call of", "n", "burst min", "burst p50", "burst max", "first call p50"], rows))
    for kind in kinds:
        p50 = percentile(totals[kind], 50)
        print(f"target (issue 24) {args.requests} concurrent calls right after {label[kind]}'s first call ≤ 250 ms: "
              f"p50 {fmt(p50)} ms → {'met' if p50 <= 250 else 'NOT met'}")


if __name__ == "__main__":
    main()
