"""Cold start with each sandbox layer added in turn: what does isolation cost on the cold-start path?

Same measurement as `coldstart.py` (redeploy → first `GET /fn/cold`, client side, persistent connection;
the server's `init_ms` read back from the activation), for a series of servers whose layers are switched
with `POLYFN_SANDBOX_DISABLE`. Layers are added cumulatively in the order the child applies them; the last
rows show the full sandbox with `network: none`, and with no pre-forked blanks (every layer paid on the
cold-start path: what a burst beyond the blanks sees).

    .venv/bin/python bench/sandbox_layers.py            # 40 samples per configuration
    .venv/bin/python bench/sandbox_layers.py --quick    # 10
"""

from __future__ import annotations

import argparse
import os
import time

from _common import Http, PolyfnServer, fmt, percentile, print_header, table
from coldstart import polyfn_sample

ALL = ["cgroup", "mount", "pid", "net", "uid", "seccomp"]


def configs() -> list[tuple[str, dict[str, str], dict[str, object]]]:
    rows: list[tuple[str, dict[str, str], dict[str, object]]] = []
    for i in range(len(ALL) + 1):
        on = ALL[:i]
        off = ALL[i:]
        label = "rlimits only" if not on else "+ " + on[-1]
        rows.append((label, {"POLYFN_SANDBOX_DISABLE": ",".join(off)}, {}))
    rows.append(("all layers, network none", {"POLYFN_SANDBOX_DISABLE": ""}, {"network": "none"}))
    rows.append(("all layers, no pre-forked blanks", {"POLYFN_SANDBOX_DISABLE": "", "POLYFN_ZYGOTE_BLANKS": "0"},
                 {}))
    return rows


def measure(env: dict[str, str], spec: dict[str, object], samples: int, settle: float
            ) -> tuple[str, list[float], list[float]]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with PolyfnServer() as server:
            client = Http(server.port)
            cold: list[float] = []
            init: list[float] = []
            try:
                if spec:  # every redeploy of the sample carries the extra spec fields
                    orig = server.deploy
                    server.deploy = lambda name, files: orig(name, files, **spec)  # type: ignore[method-assign]
                polyfn_sample(server, client, -1, settle)  # warm-up
                for i in range(samples):
                    c, _, act_id, _ = polyfn_sample(server, client, i, settle)
                    cold.append(c)
                    act = server.api.json("GET", f"/v1/activations/{act_id}")  # type: ignore[union-attr]
                    init.append(float(act.get("init_ms") or 0.0))
            finally:
                client.close()
            return server.isolation, cold, init
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--settle", type=float, default=0.1, help="seconds between a redeploy and its request")
    ap.add_argument("--quick", action="store_true", help="10 samples per configuration")
    args = ap.parse_args()
    if args.quick:
        args.samples = 10
    print_header("cold start per sandbox layer (cumulative)")
    rows = []
    base = None
    for label, env, spec in configs():
        t0 = time.perf_counter()
        isolation, cold, init = measure(env, spec, args.samples, args.settle)
        p50 = percentile(cold, 50)
        base = base or p50
        rows.append([label, fmt(p50), fmt(percentile(cold, 90)), fmt(percentile(init, 50)),
                     f"{p50 - base:+.2f}", isolation.split("; off:")[0]])
        print(f"  measured {label!r} in {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    print(table(["configuration", "cold p50 ms", "cold p90 ms", "init p50 ms", "Δ p50 vs rlimits", "isolation"],
                rows))


if __name__ == "__main__":
    main()
