"""C# (the dotnet runtime, Mono) against Node.js on the same node, same run: the seed's two Azure samples.

Cold start: each sample redeploys the function with a changed comment (a new revision, an empty pool) and
times `GET /fn/NAME` client-side over a persistent connection; the response must carry `x-polyfn-cold`.
The C# and Node samples are interleaved, so the machine's noise hits both alike. The server's view of each
cold start (`init_ms`: the instance's start until ready) is read back from the activations, and so are the
phases of each C# hand-over (a pre-started host's `init_info`: the sandbox's part, the host's own — uid switch,
`function.dll` loaded, `[FunctionName]` found — and the proxy's).
Warm: `wrk -t1 -cN` against each warm function (`max_instances` = N, `min_instances` = N, so both have the
same number of instances), one after the other. Targets (issue #28): C# cold start ≤ 30 ms p50; warm
throughput within 2× of Node's.

    .venv/bin/python bench/dotnet.py            # 20 cold samples each, wrk -c4 for 5 s
    .venv/bin/python bench/dotnet.py --quick    # 6 samples, 3 s
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

from _common import REPO, Http, PolyfnServer, fmt, percentile, print_header, run_wrk, table

#: A pre-started C# host's account of its hand-over, in its activation's init_info (runtimes/http/proxy.py).
HAND_OVER = re.compile(r"hand-over: sandbox ([\d.]+) ms, host ([\d.]+) ms \((.*?)\), proxy ([\d.]+) ms")

SEED = REPO / "examples" / "seed"
CS = (SEED / "azure-hello-csharp" / "Function1.cs").read_text()
JS = (SEED / "azure-hello-js" / "index.js").read_text()
JS_BINDINGS = (SEED / "azure-hello-js" / "function.json").read_text()


def files(kind: str, i: int) -> dict[str, str]:
    if kind == "C#":
        return {"Function1.cs": CS + f"// sample {i}\n"}
    return {"index.js": JS + f"// sample {i}\n", "function.json": JS_BINDINGS}


def name(kind: str) -> str:
    return "cs" if kind == "C#" else "js"


def deploy(server: PolyfnServer, fn: str, code: dict[str, str], **spec: object) -> None:
    """Deploy over the API connection, opened again if the server closed it while idle."""
    try:
        server.deploy(fn, code, **spec)
    except (OSError, ConnectionError):
        server.api = Http(server.port, server.key)
        server.deploy(fn, code, **spec)


def cold_sample(server: PolyfnServer, client: Http, kind: str, i: int) -> tuple[float, str]:
    deploy(server, name(kind), files(kind, i), auth="anonymous")  # the C# sample's key is not what is measured
    time.sleep(0.3)
    t0 = time.perf_counter()
    status, headers, body = client.request("GET", f"/fn/{name(kind)}")
    ms = (time.perf_counter() - t0) * 1000
    if status != 200 or body != b"Hello, World" or headers.get("x-polyfn-cold") != "true":
        raise RuntimeError(f"{kind} cold request {i}: {status} {dict(headers)} {body[:300]!r}\n{server.log_tail()}")
    return ms, headers.get("x-polyfn-activation-id", "")


def ready_instances(server: PolyfnServer, fn: str, n: int, timeout: float = 60.0) -> None:
    """Wait until `fn` has `n` instances up and none starting (min_instances starts them in the background; a
    warm measurement must not include them)."""
    api = Http(server.port, server.key)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            inst = api.json("GET", f"/v1/functions/{fn}").get("instances") or {}
            if not inst.get("starting") and inst.get("idle", 0) + inst.get("busy", 0) >= n:
                return
            time.sleep(0.2)
    finally:
        api.close()
    raise RuntimeError(f"{fn}: {n} instances not up within {timeout:.0f} s\n{server.log_tail()}")


def hand_over(info: str) -> dict[str, float]:
    """{"sandbox": ms, "host": ms, "warm-up": ms, "idle": ms, …, "proxy": ms} from an init_info, or {}."""
    m = HAND_OVER.search(info)
    if not m:
        return {}
    out = {"sandbox": float(m.group(1)), "host": float(m.group(2))}
    for part in m.group(3).split(", "):
        name, _, value = part.rpartition(" ")
        try:
            out[f"host: {name}"] = float(value)
        except ValueError:
            pass
    out["proxy"] = float(m.group(4))
    out["idle"] = out.pop("host: idle", 1.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.duration = 6, 3
    print_header("C# (Mono) vs Node.js: the seed's Azure samples, cold start and warm throughput")
    kinds = ("C#", "Node.js")
    cold: dict[str, list[float]] = {k: [] for k in kinds}
    inits: dict[str, list[float]] = {k: [] for k in kinds}
    hand_overs: list[dict[str, float]] = []
    warm = {}
    load_before = os.getloadavg()[0]
    with PolyfnServer() as server:
        client = Http(server.port)
        try:
            for k in kinds:
                cold_sample(server, client, k, -1)  # the C# shims compile once; Node's first start
            ids: dict[str, list[str]] = {k: [] for k in kinds}
            for i in range(args.samples):
                for k in kinds:
                    ms, act = cold_sample(server, client, k, i)
                    cold[k].append(ms)
                    ids[k].append(act)
            for k in kinds:
                api = Http(server.port, server.key)
                acts = [api.json("GET", f"/v1/activations/{x}") for x in ids[k]]
                inits[k] = [a["init_ms"] for a in acts if a.get("init_ms")]
                if k == "C#":
                    hand_overs = [hand_over(a.get("init_info") or "") for a in acts]
                api.close()
            n = args.connections
            for k in kinds:
                deploy(server, name(k), files(k, 10_000), auth="anonymous", min_instances=n, max_instances=n)
                client.close()
                client = Http(server.port)  # the server may have closed the idle one
                for _ in range(3 * n):
                    client.request("GET", f"/fn/{name(k)}")
                ready_instances(server, name(k), n)
                time.sleep(1.0)
                warm[k] = run_wrk(server.url(f"/fn/{name(k)}"), n, args.duration)
        finally:
            client.close()
        print(f"polyfn instance isolation: {server.isolation}")
    print(f"machine load (1-minute average): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"on {os.cpu_count()} CPUs")
    print("client-side milliseconds; ratio = C# / Node.js\n")
    rows = []
    for k in kinds:
        v = cold[k]
        rows.append([f"{k} cold start (redeploy → first GET)", str(len(v)), fmt(min(v)), fmt(percentile(v, 50)),
                     fmt(percentile(v, 90)), fmt(statistics.fmean(v))])
        rows.append([f"{k} instance start (server's init_ms)", str(len(inits[k])), fmt(min(inits[k])),
                     fmt(percentile(inits[k], 50)), fmt(percentile(inits[k], 90)), fmt(statistics.fmean(inits[k]))])
    print(table(["what", "n", "min", "p50", "p90", "mean"], rows))
    phases = [p for p in hand_overs if p]
    if phases:
        names = list(dict.fromkeys(n for p in phases for n in p))
        print("\nC# hand-over of a pre-started host, server side (ms; 'idle': how long the host had waited for its "
              "function, 0 when it was still warming up):")
        print(table(["phase", "n", "min", "p50", "p90"],
                    [[n, str(len(v)), fmt(min(v)), fmt(percentile(v, 50)), fmt(percentile(v, 90))]
                     for n in names for v in [[p[n] for p in phases if n in p]]]))
        print(f"{sum(1 for p in phases if p.get('idle', 1) < 1)} of {len(phases)} hosts were still warming up "
              "when their function came")
    cs, js = percentile(cold["C#"], 50), percentile(cold["Node.js"], 50)
    print(f"\ncold start p50: C# {fmt(cs)} ms, Node.js {fmt(js)} ms, ratio {cs / js:.2f}× "
          f"(target: C# ≤ 30 ms p50: {'met' if cs <= 30 else 'NOT met'})\n")
    rows = [[k, f"{warm[k].rps:.0f}", fmt(warm[k].p50_ms), fmt(warm[k].p99_ms), str(warm[k].non_2xx)] for k in kinds]
    print(table([f"warm, wrk -t1 -c{args.connections} -d{args.duration}s", "req/s", "p50 ms", "p99 ms", "non-2xx"], rows))
    ratio = warm["Node.js"].rps / warm["C#"].rps
    print(f"\nwarm throughput: C# {warm['C#'].rps:.0f} req/s, Node.js {warm['Node.js'].rps:.0f} req/s, Node.js / C# = "
          f"{ratio:.2f}× (target: within 2×: {'met' if ratio <= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
