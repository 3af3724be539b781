"""What a cluster's shared services carry as nodes, functions and requests grow (docs/scale.md).

The loads come from the design (what each node does, how often) and the request rate from the Azure
Functions 2019 trace sample (/work/shared/data/azure-functions-2019-sample: 1,000 functions, one day by
the minute), replicated to the number of functions asked for (each copy shifted in time). The costs are
measured here, on this machine, against the real parts:

* **sync polling**: one pass of `ClusterSync` reads every function's current revision and every trigger
  (`Store.list_functions`, `TriggerStore.list`) from PostgreSQL; measured with F functions in a database
  of the run's own. Each node makes a pass every `POLYFN_SYNC_INTERVAL` (2 s) and on every change notice.
* **NATS long polls**: every node keeps one pull request open per function on its durable consumer
  (`fn-<name>`), re-issued every 5 s when idle (streamfeed.py); measured: nats-server CPU per expired pull
  request, with `--consumers` consumers polled with a short timeout.
* **activation records**: one row per invocation (`Store.add_activations`, batches of 200 as the recorder
  writes them); measured: rows a second into PostgreSQL.
* **metrics**: the series a node exposes with F functions invoked (`Metrics.render`), times the nodes for
  what Prometheus scrapes.

Every measured figure comes with the machine's load (2 CPUs shared with other work: the figures are
noisy, and the capacities here are a laptop's, not a database server's).

    .venv/bin/python bench/scale.py                                  # 100 nodes × 10,000 functions
    .venv/bin/python bench/scale.py --nodes 20 --functions 2000 --measure-functions 500 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRACE = Path(os.environ.get("POLYFN_TRACE_DIR", "/work/shared/data/azure-functions-2019-sample"))
PG_ADMIN_DSN = os.environ.get("POLYFN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("POLYFN_TEST_NATS_URL", "nats://127.0.0.1:4222")
SYNC_INTERVAL = 2.0  # POLYFN_SYNC_INTERVAL's default on PostgreSQL
FETCH_TIMEOUT = 5.0  # streamfeed.py: an idle feeder's pull request lasts this long


STORE_POOL = 5 + 10  # the metadata store's engine: SQLAlchemy's default pool (5 kept, 10 more under load)
DB_POOL = 16 + 16  # the document database's engine (db/storage.py)


async def max_connections() -> int:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


# -- the trace -------------------------------------------------------------------------------------------


def per_minute(functions: int, trace: Path = TRACE) -> list[int]:
    """Invocations started in each minute of the day by `functions` functions: the sample's 1,000, copied
    as often as needed, copy k shifted by 97·k minutes (so copies do not peak together)."""
    rows = []
    with (trace / "1000_inv.csv").open() as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            rows.append([int(v) for v in row[3:]])
    minutes = len(rows[0])
    out = [0] * minutes
    for i in range(functions):
        row, shift = rows[i % len(rows)], 97 * (i // len(rows))
        for m in range(minutes):
            out[m] += row[(m + shift) % minutes]
    return out


def duration_ms(trace: Path = TRACE) -> float:
    """The sample's invocation-weighted mean duration (ms)."""
    total = weighted = 0.0
    with (trace / "1000_run.csv").open() as f:
        for row in csv.DictReader(f):
            n = float(row["Count"])
            total += n
            weighted += n * float(row["Average"])
    return weighted / max(total, 1)


# -- measurements ------------------------------------------------------------------------------------------


async def _pg(sql: str, db: str = "") -> None:
    import asyncpg

    dsn = PG_ADMIN_DSN if not db else PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + db
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class PgFigures:
    pass_ms: float  # one sync pass (functions + triggers) with F functions
    base_ms: float  # … with F/4 functions (the two give the cost per function and the fixed part)
    rows_per_s: float  # activation records inserted a second
    functions: int

    def pass_at(self, functions: int) -> float:
        """A pass's time with `functions` functions, by the line through the two measured points."""
        per = (self.pass_ms - self.base_ms) / (self.functions - self.functions // 4)
        return self.pass_ms + per * (functions - self.functions)


async def measure_pg(functions: int, records: int) -> PgFigures:
    """A database of its own: F functions (one revision each) and a trigger per tenth of them; then the
    sync pass's reads, timed (best of 5), and `records` activation records written in batches of 200."""
    from polyfn.model import Activation, FunctionSpec
    from polyfn.store import Store
    from polyfn.triggers.store import Trigger, TriggerStore

    name = f"polyfn_scale_{secrets.token_hex(4)}"
    await _pg(f"CREATE DATABASE {name}")
    store = await Store.open(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    tstore = TriggerStore(store)
    try:
        for i in range(functions):
            await store.create_revision(FunctionSpec(name=f"f{i}"), f"{i:064x}", f"/code/f{i}", None)
            if i % 10 == 0:
                await tstore.add(Trigger(id=f"t{i}", function=f"f{i}", kind="cron",
                                                config={"schedule": "* * * * *"}))
        async def timed_pass() -> float:
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                await store.list_functions()
                await tstore.list()
                best = min(best, time.perf_counter() - t0)
            return best

        best = await timed_pass()
        async with store.engine.begin() as conn:  # the same with a quarter of the functions
            from sqlalchemy import text

            await conn.execute(text(f"DELETE FROM functions WHERE name NOT IN "
                                    f"(SELECT 'f' || g FROM generate_series(0, {functions // 4 - 1}) g)"))
        base = await timed_pass()
        acts = [Activation(id=secrets.token_hex(16), function=f"f{i % functions}", revision=1, trigger="http",
                           start=time.time(), end=time.time(), duration_ms=12.0, result="ok")
                for i in range(records)]
        t0 = time.perf_counter()
        for i in range(0, records, 200):
            await store.add_activations(acts[i:i + 200])
        rate = records / (time.perf_counter() - t0)
    finally:
        await store.close()
        await _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return PgFigures(best * 1000, base * 1000, rate, functions)


def _nats_pid() -> int | None:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "nats-server":
                    return int(d.name)
            except OSError:
                continue
    return None


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_nats(consumers: int, seconds: float, timeout: float = 0.25) -> float | None:
    """nats-server CPU microseconds per expired (empty) pull request: `consumers` durable consumers on a
    stream of its own, each polled in a loop with `timeout` (shorter than polyfn's 5 s, to make many)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

    pid = _nats_pid()
    if pid is None:
        return None
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    stream = f"SCALE_{secrets.token_hex(4).upper()}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"], retention=RetentionPolicy.WORK_QUEUE))
    subs = [await js.pull_subscribe(f"{stream}.f{i}.*", durable=f"fn-f{i}", stream=stream,
                                    config=ConsumerConfig(durable_name=f"fn-f{i}", ack_policy=AckPolicy.EXPLICIT))
            for i in range(consumers)]
    polls = 0
    stop = time.monotonic() + seconds

    async def poll(sub: Any) -> None:
        nonlocal polls
        while time.monotonic() < stop:
            try:
                await sub.fetch(1, timeout=timeout)
            except Exception:
                pass
            polls += 1

    cpu0 = _cpu(pid)
    await asyncio.gather(*(poll(s) for s in subs))
    used = _cpu(pid) - cpu0
    await js.delete_stream(stream)
    await nc.close()
    return used / max(polls, 1) * 1e6


def measure_metrics(functions: int) -> tuple[int, int]:
    """(series, bytes) one node exposes at /metrics once `functions` functions have each been invoked."""
    from polyfn.model import Activation
    from polyfn.observe.metrics import Metrics

    m = Metrics(lambda: [], 1024)
    now = time.time()
    for i in range(functions):
        for status in ("success", "error"):
            m.observe(Activation(id=str(i), function=f"f{i}", revision=1, trigger="http", start=now - 0.01, end=now,
                                 duration_ms=10.0, status=status))
    body, _ = m.render()
    lines = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
    return len(lines), len(body)


# -- the report --------------------------------------------------------------------------------------------


def report(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    n, f = args.nodes, args.functions
    minutes = per_minute(f)
    peak_rps, mean_rps = max(minutes) / 60, sum(minutes) / len(minutes) / 60
    dur = duration_ms()
    print(f"# scale: {n} nodes × {f:,} functions ({load()})")
    print(f"trace: {f:,} functions (the sample's 1,000 ×{f / 1000:g}) start {sum(minutes):,} invocations a day: "
          f"{mean_rps:,.0f}/s on average, {peak_rps:,.0f}/s in the busiest minute; mean duration {dur:,.0f} ms")

    mf = min(f, args.measure_functions)
    pg = asyncio.run(measure_pg(mf, args.records))
    pass_ms = pg.pass_at(f)  # the pass reads every function: linear in F
    print(f"measured ({load()}): a sync pass over {mf:,} functions takes {pg.pass_ms:.1f} ms, over {mf // 4:,} "
          f"{pg.base_ms:.1f} ms (→ {pass_ms:.0f} ms at {f:,}); PostgreSQL takes {pg.rows_per_s:,.0f} activation "
          "records/s")
    nats_us = asyncio.run(measure_nats(args.consumers, args.nats_seconds))
    print(f"measured ({load()}): nats-server spends {nats_us or float('nan'):.0f} µs of CPU per expired pull request "
          f"({args.consumers} consumers)")
    series, size = measure_metrics(mf)
    per_fn_series, per_fn_bytes = series / mf, size / mf
    print(f"measured: /metrics with {mf:,} functions: {series:,} series, {size / 1e6:.1f} MB "
          f"({per_fn_series:.0f} series and {per_fn_bytes / 1e3:.1f} kB per function)")

    rows = []
    max_conn = asyncio.run(max_connections())
    per_node = STORE_POOL + DB_POOL  # each pool's kept + overflow connections (store/db.py, db/storage.py)
    rows.append(("PostgreSQL: connections", f"{n} nodes × up to {per_node} (two pools) = {n * per_node:,}",
                 f"max_connections here: {max_conn}: full at {max_conn // per_node} busy nodes",
                 "breaks" if n * per_node > max_conn else "holds"))
    passes = n / SYNC_INTERVAL
    pg_cores = passes * pass_ms / 1000
    rows.append(("PostgreSQL: sync polling", f"{passes:,.0f} passes/s × {f:,} rows = {passes * f:,.0f} rows/s",
                 f"{pg_cores:,.1f} s of pass time a second, node and database (a pass: {pass_ms:.0f} ms)",
                 "breaks" if pg_cores > 4 else "holds"))
    pulls = n * f / FETCH_TIMEOUT
    nats_cores = pulls * (nats_us or 0) / 1e6
    rows.append(("NATS: idle long polls", f"{n} × {f:,} consumers' pulls / {FETCH_TIMEOUT:g} s = {pulls:,.0f}/s",
                 f"{nats_cores:,.1f} cores of nats-server ({nats_us or float('nan'):.0f} µs each)",
                 "breaks" if nats_cores > 1 else "holds"))
    rows.append(("PostgreSQL: activation records", f"{peak_rps:,.0f} rows/s at the peak minute "
                 f"({mean_rps:,.0f}/s mean)", f"{peak_rps / pg.rows_per_s:.1f}× what this machine's PostgreSQL took",
                 "breaks" if peak_rps > pg.rows_per_s else "holds"))
    total_series = series * f / mf * n
    rows.append(("Prometheus: metrics series", f"{per_fn_series:.0f} per function × {f:,} × {n} nodes",
                 f"{total_series:,.0f} series; {size * f / mf / 1e6:.0f} MB per node per scrape",
                 "breaks" if total_series > 10_000_000 else "holds"))
    print()
    print("| load | at this size | what it costs | verdict |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--functions", type=int, default=10_000)
    ap.add_argument("--measure-functions", type=int, default=2_000,
                    help="functions put in the measured database and metrics (the rest extrapolated, linear)")
    ap.add_argument("--records", type=int, default=20_000, help="activation records written to measure the rate")
    ap.add_argument("--consumers", type=int, default=200, help="NATS consumers polled to measure a pull's cost")
    ap.add_argument("--nats-seconds", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="small measurements (for the docs' test)")
    args = ap.parse_args()
    if args.quick:
        args.measure_functions = min(args.measure_functions, 300)
        args.records, args.consumers, args.nats_seconds = 2_000, 50, 2.0
    sys.exit(0 if report(args) else 1)


if __name__ == "__main__":
    main()
