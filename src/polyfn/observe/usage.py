"""Usage metering: what each invocation bills, summed per namespace, function and hour, off the hot path.

An invocation bills its duration on an instance (from the moment it got one to its end, a stream's end
included), rounded up to the next millisecond, times the function's configured memory: GB·s (1 GB = 1024 MB).
It also counts as an invocation, and its request and response bytes are counted. A call refused before it ran
(shed, throttled) makes no activation record and is not metered; a call whose instance failed to start counts
as an invocation with no billed time.

Nothing here runs per call: the activation recorder (observe/recorder.py) hands every batch of records it has
stored to `UsageMeter.add`, which sums it in memory, and the recorder's flush writes the sums with one upsert
(`Store.add_usage`): the usage of a record is stored right after the record itself. Only records the invoker
made are metered (they carry `memory_mb`); an async job's pending/running records and trigger activations
carry none. A retried async invocation bills every attempt, while its activation record keeps only the newest.

Beyond invocations (`count`, off the hot path too: each adds to the same pending sums): bytes a namespace holds
in storage, sampled every `POLYFN_STORAGE_SAMPLE_S` and summed as byte-seconds (GB-month = 2^30 bytes held for
30 days), database items read and written (per function for a function's own key, else `(database)`) and
workflow state transitions (`(workflows)`). Things that belong to no function are kept under these
pseudo-function names, in brackets so no function can be named like them.

A price table (`prices/*.toml`: samples of vendors' list prices, or a file of one's own) turns the sums into
an estimated bill: per GB·s and per million requests, and where the table has them per GB-month stored, per
million database reads and writes and per thousand workflow transitions.
"""

from __future__ import annotations

import logging
import math
import time
import tomllib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polyfn.model import Activation
from polyfn.tenancy import DEFAULT, qualify, split

log = logging.getLogger("polyfn.usage")

NAMESPACE = DEFAULT  # the namespace a single-user node's functions are in (tenancy.py)
MB_PER_GB = 1024
SUMS = ("invocations", "errors", "billed_ms", "mb_ms", "req_bytes", "resp_bytes", "storage_byte_s", "db_reads",
        "db_writes", "transitions")
STORAGE = "(storage)"  # the pseudo-function a namespace's stored bytes are metered under
DATABASE = "(database)"  # database reads and writes of keys that are no function's
WORKFLOWS = "(workflows)"  # workflow state transitions
GB_MONTH_BYTE_S = (1 << 30) * 30 * 86400  # one GB-month in byte-seconds
FIELD = {k: i for i, k in enumerate(SUMS)}
ZERO = (0,) * len(SUMS)
BY = ("function", "day", "hour")
WRITE_S = 5.0  # seconds between writes of the sums by the recorder's background flush
PRICES_DIR = Path(__file__).parent / "prices"


def billed_ms(act: Activation) -> int:
    """Milliseconds an activation bills: its time on an instance, rounded up to 1 ms (0 without an instance)."""
    if not act.instance:
        return 0
    return max(1, math.ceil(act.duration_ms - act.wait_ms))


def gb_seconds(mb_ms: int) -> float:
    return mb_ms / MB_PER_GB / 1000


def _add_run(batch: dict[tuple[str, int], list[int]], function: str, hour: float, n: int, errors: int, ms: int,
             mb_ms: int, req: int, resp: int) -> None:
    """A run of `n` records of `function` in hour `hour` (`start // 3600`) into a batch's sums."""
    key = (function, int(hour) * 3600)
    sums = batch.get(key)
    if sums is None:
        sums = batch[key] = list(ZERO)
    sums[0] += n
    sums[1] += errors
    sums[2] += ms
    sums[3] += mb_ms
    sums[4] += req
    sums[5] += resp


class UsageMeter:
    """Sums the records the recorder stored (`add`) and writes the sums (`flush`, under the recorder's lock)."""

    def __init__(self, store: Any, metrics: Any = None, retention: float = 400 * 86400.0,
                 interval: float = WRITE_S):
        self.store = store
        self.interval = interval  # seconds between the background flushes' writes (a reader's flush writes now)
        self._written = time.monotonic()
        self.retention = retention  # seconds of hourly sums kept
        self.pending: dict[tuple[str, str, int], list[int]] = {}  # (namespace, function, hour) → SUMS
        self._gb_s = self._req = self._resp = None  # the Prometheus counters (observe/metrics.py)
        self._other: dict[str, Any] = {}  # SUMS field → its counter, for what `count` meters
        if metrics is not None:
            self._gb_s, self._req, self._resp = metrics.billed_gb_seconds, metrics.request_bytes, metrics.response_bytes
            self._other = {
                "storage_byte_s": metrics.counter(
                    "polyfn_storage_byte_seconds_total", "Bytes held in storage × seconds (sampled), by namespace "
                    "(function label `(storage)`).", ("function",)),
                "db_reads": metrics.counter("polyfn_db_reads_total", "Database items read (metered), by "
                                            "function (`(database)`: keys of no function).", ("function",)),
                "db_writes": metrics.counter("polyfn_db_writes_total", "Database items written (metered), by "
                                             "function (`(database)`: keys of no function).", ("function",)),
                "transitions": metrics.counter("polyfn_workflow_transitions_total", "Workflow state transitions "
                                               "(metered), by namespace (function label `(workflows)`).",
                                               ("function",))}

    def count(self, function: str, field: str, n: int, at: float | None = None) -> None:
        """Meter `n` of `field` (one of SUMS) for `function` (a held name, or a pseudo-function qualified with
        its namespace) in the hour of `at` (now by default). Cheap: a dict update."""
        if n <= 0:
            return
        ns, name = split(function)
        key = (ns, name, int((time.time() if at is None else at) // 3600) * 3600)
        sums = self.pending.get(key)
        if sums is None:
            sums = self.pending[key] = list(ZERO)
        sums[FIELD[field]] += n
        c = self._other.get(field)
        if c is not None:
            c.inc(function, n=n)

    def add(self, acts: Iterable[Activation]) -> None:
        """Sum a stored batch of records into the pending sums (and the counters, once per function and hour).

        This runs on the event loop for every record a busy node makes (~1.4 µs a record written as one dict
        lookup and six list updates each): a run of records of one function and hour (a busy node's batch is
        mostly one) is summed in local variables and added to the batch's sums when the run ends."""
        batch: dict[tuple[str, int], list[int]] = {}  # (function, hour) → sums
        ceil = math.ceil
        fn: Any = None  # the current run's function and hour (`start // 3600`)
        hour = -1.0
        n = errors = ms_sum = mb_ms = req = resp = 0
        for a in acts:
            mem = a.memory_mb
            if not mem:
                continue
            h = a.start // 3600
            if h != hour or a.function != fn:
                if n:
                    _add_run(batch, fn, hour, n, errors, ms_sum, mb_ms, req, resp)
                fn, hour = a.function, h
                n = errors = ms_sum = mb_ms = req = resp = 0
            if a.instance:  # (`billed_ms`, inline: max(1, ceil(d)))
                d = a.duration_ms - a.wait_ms
                ms = ceil(d) if d > 1 else 1
                ms_sum += ms
                mb_ms += ms * mem
            n += 1
            if a.status != "success":
                errors += 1
            req += a.req_bytes
            resp += a.resp_bytes
        if n:
            _add_run(batch, fn, hour, n, errors, ms_sum, mb_ms, req, resp)
        pending = self.pending
        for (function, hour), sums in batch.items():
            ns, name = split(function)  # (stored by namespace and local name)
            key = (ns, name, hour)
            now = pending.get(key)
            if now is None:
                pending[key] = sums
            else:
                for i, n in enumerate(sums):
                    now[i] += n
            if self._gb_s is not None:
                held = qualify(key[0], key[1])  # (the metrics' function label is the held name)
                self._gb_s.inc(held, n=gb_seconds(sums[3]))
                self._req.inc(held, n=sums[4])
                self._resp.inc(held, n=sums[5])

    async def flush(self, background: bool = False) -> None:
        """Write the pending sums; on failure they stay pending (added to whatever comes next) and it raises.
        `background` (the recorder's own periodic flush): only once `interval` seconds have passed since the
        last write, so a busy node pays one small upsert every few seconds, not one per batch of records."""
        if not self.pending or (background and time.monotonic() - self._written < self.interval):
            return
        self._written = time.monotonic()
        batch, self.pending = self.pending, {}
        rows = [{"namespace": k[0], "function": k[1], "hour": k[2], **dict(zip(SUMS, v, strict=True))}
                for k, v in batch.items()]
        try:
            await self.store.add_usage(rows)
        except Exception:
            for key, sums in batch.items():
                now = self.pending.setdefault(key, [0] * len(SUMS))
                for i, n in enumerate(sums):
                    now[i] += n
            raise

    async def prune(self, now: float | None = None) -> int:
        return await self.store.prune_usage((time.time() if now is None else now) - self.retention)


# -- reading: sums by function, day or hour, and a price table's estimate ---------------------------------


def _key(row: dict[str, Any], by: str) -> str:
    if by == "function":
        return row["function"]  # (a report is of one namespace: GET /v1/usage reads the request's)
    t = datetime.fromtimestamp(row["hour"], UTC)
    return t.strftime("%Y-%m-%d") if by == "day" else t.strftime("%Y-%m-%dT%H:00Z")


def gb_months(byte_s: int) -> float:
    return byte_s / GB_MONTH_BYTE_S


OPTIONAL_PRICES = ("per_gb_month", "per_million_db_reads", "per_million_db_writes", "per_thousand_transitions")


def cost(sums: dict[str, Any], prices: dict[str, Any]) -> float:
    """The estimated cost of summed usage under a price table (`load_prices`; a price it lacks counts 0)."""
    return round(gb_seconds(sums["mb_ms"]) * prices["per_gb_second"]
                 + sums["invocations"] / 1e6 * prices["per_million_requests"]
                 + gb_months(sums.get("storage_byte_s", 0)) * prices.get("per_gb_month", 0.0)
                 + sums.get("db_reads", 0) / 1e6 * prices.get("per_million_db_reads", 0.0)
                 + sums.get("db_writes", 0) / 1e6 * prices.get("per_million_db_writes", 0.0)
                 + sums.get("transitions", 0) / 1e3 * prices.get("per_thousand_transitions", 0.0), 6)


def _figures(sums: dict[str, int], prices: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {k: sums[k] for k in SUMS}
    out["gb_seconds"] = round(gb_seconds(sums["mb_ms"]), 6)
    out["gb_months"] = float(f"{gb_months(sums['storage_byte_s']):.6g}")
    if prices is not None:
        out["cost"] = cost(sums, prices)
    return out


def summarise(rows: Sequence[dict[str, Any]], by: str, since: float | None, until: float | None,
              prices: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored hourly rows grouped `by` function, day or hour (UTC), with totals and, given a price table,
    the estimated cost of each group and of the whole."""
    groups: dict[str, dict[str, int]] = {}
    total = dict.fromkeys(SUMS, 0)
    for row in rows:
        g = groups.setdefault(_key(row, by), dict.fromkeys(SUMS, 0))
        for k in SUMS:
            v = row.get(k) or 0
            g[k] += v
            total[k] += v
    order = sorted(groups, key=lambda k: -groups[k]["mb_ms"]) if by == "function" else sorted(groups)
    out: dict[str, Any] = {"since": since, "until": until, "by": by,
                           "usage": [{by: k, **_figures(groups[k], prices)} for k in order],
                           "total": _figures(total, prices)}
    if prices is not None:
        out["prices"] = prices
    return out


def price_tables() -> list[str]:
    """The names of the sample price tables shipped with polyfn."""
    return sorted(p.stem for p in PRICES_DIR.glob("*.toml"))


def load_prices(ref: str, files: bool = True) -> dict[str, Any]:
    """A price table by the name of a shipped sample (`lambda`, `alibaba-fc`, `tencent-scf`) or, when `files`,
    a TOML file's path. ValueError with what is wrong."""
    path = PRICES_DIR / f"{ref}.toml"
    if ref not in price_tables():
        if not files:
            raise ValueError(f"no price table {ref!r}: the node has {', '.join(price_tables())}")
        path = Path(ref)
        if not path.is_file():
            raise ValueError(f"{ref!r} is neither a price table ({', '.join(price_tables())}) nor a file")
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"price table {ref!r} does not read as TOML: {e}") from None
    for k in ("per_gb_second", "per_million_requests"):
        v = table.get(k)
        if type(v) not in (int, float) or not math.isfinite(v) or v < 0:
            raise ValueError(f"price table {ref!r}: {k} must be a number ≥ 0 (got {v!r})")
    optional = {}
    for k in OPTIONAL_PRICES:
        if k in table:
            v = table[k]
            if type(v) not in (int, float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"price table {ref!r}: {k} must be a number ≥ 0 (got {v!r})")
            optional[k] = float(v)
    return {"name": str(table.get("name", path.stem)), "currency": str(table.get("currency", "")),
            "as_of": str(table.get("as_of", "")), "sample": bool(table.get("sample", False)),
            "per_gb_second": float(table["per_gb_second"]),
            "per_million_requests": float(table["per_million_requests"]), **optional}
