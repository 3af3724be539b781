"""Node.js cold start: no instance of a Node function → its first HTTP response (Node has no zygote).

Each sample redeploys a tiny `exports.handler` (aws flavor) with a changed comment, so the revision's pool
is empty and `GET /fn/coldnode` must launch `node bootstrap.js`. Timed client-side over a persistent
connection; the response must carry `x-polyfn-cold: true`. The peer, interleaved in the same run: a fresh
`node` process serving the same handler with the stdlib `http` module on an inherited listening socket,
spawn → first response (its best case: no port polling).

    .venv/bin/python bench/coldstart_node.py            # 60 polyfn samples, 20 peer samples
    .venv/bin/python bench/coldstart_node.py --quick    # 15 and 5
    .venv/bin/python bench/coldstart_node.py --layers   # + a second server without the namespace/uid/seccomp
                                                        #   layers, sampled interleaved in the same run
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import shutil
import socket
import statistics
import subprocess
import time

from _common import Http, PolyfnServer, fmt, percentile, print_header, table, temp_dir

HANDLER = "exports.handler = async () => ({ statusCode: 200, body: 'Hello World!' });\n"
PEER = """
const http = require('http');
const { handler } = require(process.argv[2]);
const server = http.createServer(async (req, res) => {
  const r = await handler({}, {});
  res.end(r.body);
  server.close();
});
server.listen({ fd: Number(process.argv[3]) });
"""


def polyfn_sample(server: PolyfnServer, client: Http, i: int, settle: float) -> tuple[float, str, bool]:
    server.deploy("coldnode", {"index.js": HANDLER + f"// sample {i}\n"})
    time.sleep(settle)
    t0 = time.perf_counter()
    status, headers, body = client.request("GET", "/fn/coldnode")
    ms = (time.perf_counter() - t0) * 1000
    if status != 200 or body != b"Hello World!":
        raise RuntimeError(f"cold request {i}: {status} {body[:300]!r}\n{server.log_tail()}")
    return ms, headers.get("x-polyfn-activation-id", ""), headers.get("x-polyfn-cold") == "true"


def peer_sample(node: str, script: str, handler: str) -> float:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        t0 = time.perf_counter()
        proc = subprocess.Popen([node, script, handler, str(fd)], pass_fds=[fd])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/")
            body = conn.getresponse().read()
            ms = (time.perf_counter() - t0) * 1000
        finally:
            conn.close()
            proc.wait(30)
    if body != b"Hello World!":
        raise RuntimeError(f"peer answered {body[:200]!r}")
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--peer-samples", type=int, default=20)
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds between a redeploy and its request (lets the pre-started process refill)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--layers", action="store_true",
                    help="also measure a server with only cgroup + rlimits (POLYFN_SANDBOX_DISABLE=mount,pid,net,"
                         "uid,seccomp), interleaved with the full sandbox in the same run")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.peer_samples = 15, 5
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed")
    print_header("Node.js cold start: no instance → first HTTP response")
    configs = [("full sandbox", {})]
    if args.layers:
        configs.append(("cgroup + rlimits only", {"POLYFN_SANDBOX_DISABLE": "mount,pid,net,uid,seccomp"}))
    cold: dict[str, list[float]] = {label: [] for label, _ in configs}
    ids: dict[str, list[str]] = {label: [] for label, _ in configs}
    acts: dict[str, list[dict]] = {}
    isolation: dict[str, str] = {}
    peer: list[float] = []
    not_cold = 0
    with temp_dir("polyfn-bench-node-") as tmp, contextlib.ExitStack() as stack:
        servers = [(label, stack.enter_context(PolyfnServer(env=env))) for label, env in configs]
        (tmp / "handler.js").write_text(HANDLER)
        (tmp / "peer.js").write_text(PEER)
        clients = {label: Http(server.port) for label, server in servers}
        try:
            for label, server in servers:
                polyfn_sample(server, clients[label], -1, args.settle)
            peer_sample(node, str(tmp / "peer.js"), str(tmp / "handler.js"))
            every = max(1, args.samples // max(args.peer_samples, 1))
            for i in range(args.samples):
                for label, server in servers:  # interleaved: the machine's noise hits every row alike
                    ms, act, is_cold = polyfn_sample(server, clients[label], i, args.settle)
                    cold[label].append(ms)
                    ids[label].append(act)
                    not_cold += not is_cold
                if i % every == 0 and len(peer) < args.peer_samples:
                    peer.append(peer_sample(node, str(tmp / "peer.js"), str(tmp / "handler.js")))
            for label, server in servers:
                acts[label] = [server.api.json("GET", f"/v1/activations/{a}")  # type: ignore[union-attr]
                               for a in ids[label] if a]
                isolation[label] = server.isolation
        finally:
            for c in clients.values():
                c.close()
    p50 = percentile(cold["full sandbox"], 50)
    print(f"{subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()}")
    for label, iso in isolation.items():
        print(f"polyfn ({label}): instance isolation: {iso}")
    print("client-side milliseconds; ratio = the row's p50 / polyfn Node cold start p50 (full sandbox)\n")

    def row(name: str, values: list[float]) -> list[str]:
        return [name, str(len(values)), fmt(min(values)), fmt(percentile(values, 50)), fmt(percentile(values, 90)),
                fmt(statistics.fmean(values)), f"{percentile(values, 50) / p50:.2f}×"]

    rows = [row(f"polyfn Node cold start, {label} (redeploy → first GET)", cold[label]) for label, _ in configs]
    rows.append(row("fresh node + stdlib http server (spawn → 1st response)", peer))
    print(table(["what", "n", "min", "p50", "p90", "mean", "ratio"], rows))
    for label, _ in configs:
        inits = [a["init_ms"] for a in acts[label] if a.get("init_ms")]
        if inits:
            print(f"\nserver-side init_ms, {label} (spec sent → Ready frame): p50 {fmt(percentile(inits, 50))}, "
                  f"p90 {fmt(percentile(inits, 90))}")
    if not_cold:
        print(f"\nwarning: {not_cold} samples were not marked x-polyfn-cold: true")


if __name__ == "__main__":
    main()
