"""What the root filesystem and the default network (`egress`) cost: cold start and warm throughput, with the
two layers on and off (`POLYFN_SANDBOX_DISABLE=root,egress`), two servers in the same run, interleaved.

Rows, each "on" against "off" measured alternately (round-robin, so drift on a shared machine hits both):
  * cold start from a function zygote (no instance → first response; the module already imported in the
    zygote, which built the root and the veth once): the cold path most calls take;
  * first cold start of a new revision (redeploy → first response, forked from the runtime zygote): the root
    filesystem is built on this path (the veth is made in a pre-forked blank, off it);
  * warm throughput, `wrk -t1 -c32` on `GET /fn/hot` (an idle instance per connection slot).

    .venv/bin/python bench/rootfs_egress.py            # 60 cold samples of each kind, 5 wrk rounds
    .venv/bin/python bench/rootfs_egress.py --quick    # 15 and 2

Target (issue 27): on/off within 5 % for the zygote cold start and the warm throughput.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import HELLO_NATIVE, Http, PolyfnServer, fmt, percentile, print_header, run_wrk, table
from coldstart import polyfn_sample, wait_zygote, zygote_sample

#: "off" is the node as it was before these layers: the host's root and the host network (`network: host`)
CONFIGS = {"on": {"POLYFN_SANDBOX_DISABLE": ""}, "off": {"POLYFN_SANDBOX_DISABLE": "root,egress"}}
NETWORK = {"on": "egress", "off": "host"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=60, help="cold samples of each kind per configuration")
    ap.add_argument("--rounds", type=int, default=5, help="wrk rounds per configuration")
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk round")
    ap.add_argument("--settle", type=float, default=0.1)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.rounds = 15, 2
    print_header("root filesystem + egress network: on vs off (POLYFN_SANDBOX_DISABLE=root,egress, network host)")
    servers = {k: PolyfnServer(env=env).__enter__() for k, env in CONFIGS.items()}
    clients: dict[str, Http] = {}
    try:
        for k, s in servers.items():
            print(f"{k:>3}: {s.isolation}")
            clients[k] = Http(s.port)
            net = NETWORK[k]
            s.deploy("zhello", {"handler.py": HELLO_NATIVE}, network=net)
            s.deploy("hot", {"handler.py": HELLO_NATIVE}, max_instances=4, concurrency=8, network=net)
            orig = s.deploy
            s.deploy = lambda name, files, _o=orig, _n=net, **kw: _o(name, files, network=_n, **kw)  # type: ignore[method-assign]
            status, _, _ = clients[k].request("GET", "/fn/zhello")
            assert status == 200, s.log_tail()
            wait_zygote(s, "zhello")
        zyg: dict[str, list[float]] = {k: [] for k in servers}
        first: dict[str, list[float]] = {k: [] for k in servers}
        infos: dict[str, str] = {}
        for i in range(-1, args.samples):  # -1: unmeasured warm-up; no redeploys meanwhile (their zygote
            for k, s in servers.items():  # builds and drains would load the machine during this phase)
                ms, _, info = zygote_sample(s, clients[k], "zhello", b"Hello World!")
                if i >= 0:
                    zyg[k].append(ms)
                infos[k] = info
        for i in range(-1, args.samples):
            for k, s in servers.items():
                cold, _, _, is_cold = polyfn_sample(s, clients[k], i, args.settle)
                if i >= 0 and is_cold:
                    first[k].append(cold)
        tput: dict[str, list[float]] = {k: [] for k in servers}
        for _ in range(args.rounds):
            for k, s in servers.items():
                res = run_wrk(s.url("/fn/hot"), 32, args.duration)
                tput[k].append(res.rps)
                time.sleep(0.5)
        rows = []
        for label, data in (("cold start from the function zygote (ms)", zyg),
                            ("first cold start of a new revision (ms)", first)):
            on, off = data["on"], data["off"]
            rows.append([label, fmt(percentile(on, 50)), fmt(percentile(off, 50)),
                         f"{percentile(on, 50) / percentile(off, 50):.3f}", fmt(percentile(on, 90)),
                         fmt(percentile(off, 90))])
        on, off = statistics.median(tput["on"]), statistics.median(tput["off"])
        rows.append(["warm throughput, wrk -c32 (req/s, median of rounds)", f"{on:.0f}", f"{off:.0f}",
                     f"{on / off:.3f}", "", ""])
        print(table(["measure", "on p50", "off p50", "on/off", "on p90", "off p90"], rows))
        print(f"\nzygote instance info (on): {infos.get('on', '')[:300]}")
    finally:
        for c in clients.values():
            c.close()
        for s in servers.values():
            s.__exit__(None, None, None)


if __name__ == "__main__":
    main()
