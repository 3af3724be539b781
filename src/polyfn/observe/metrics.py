"""Node metrics: cheap counters on the hot path, Prometheus text at scrape time, per-function history.

The hot path never touches prometheus-client. `Invoker` calls `Metrics.observe(activation)` once per
invocation, which bumps plain Python ints in a per-function `FunctionStats` (a dict lookup, two
`bisect`s and a few additions). A custom prometheus-client `Collector` reads those ints when `/metrics`
is scraped, and reads gauges (instances by state, queue depth, memory in use) from the live pools at the
same moment. So scraping costs the scraper, not the invocations.

Each `FunctionStats` also keeps a ring of 10-second slots covering the last hour (count, errors, cold
starts, throttles, a fine latency histogram, instances), from which `polyfn top` and the console's charts
are computed: `window()` for "now" figures (rps, p50/p99) and `series()` for charts.

Other components add metrics through a small API on the node's `Metrics` object (`node.metrics`):

    retries = node.metrics.counter("polyfn_async_retries_total", "Async retries.", ("function",))
    retries.inc("nightly")                           # hot path: a dict update, no locks
    node.metrics.gauge("polyfn_async_backlog", "Queued async invocations.", ("function",),
                       lambda: {("resize",): 3})     # read at scrape time
See docs/observability.md for every name and label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from polyfn import tenancy
from polyfn.loops import one_item
from polyfn.model import Activation

log = logging.getLogger("polyfn.metrics")

#: Prometheus histogram bounds, seconds (invocation duration, init, queue wait).
SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)
_MS_BUCKETS = tuple(b * 1000 for b in SECONDS_BUCKETS)

#: Fine latency bounds (ms) for percentiles: geometric, factor 1.2, 0.05 ms … ~9 min; error ≤ 10 %.
FINE_BOUNDS_MS: tuple[float, ...] = tuple(0.05 * 1.2**i for i in range(90))
_FINE_N = len(FINE_BOUNDS_MS) + 1

SLOT_S = 10  # seconds per history slot
SLOTS = 360  # one hour of history


def quantile(hist: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a FINE_BOUNDS_MS histogram: the geometric middle of the bucket it falls in."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank and n:
            if i == 0:
                return FINE_BOUNDS_MS[0] / 2
            if i >= len(FINE_BOUNDS_MS):
                return FINE_BOUNDS_MS[-1]
            return (FINE_BOUNDS_MS[i - 1] * FINE_BOUNDS_MS[i]) ** 0.5
    return FINE_BOUNDS_MS[-1]


class FunctionStats:
    """Everything counted for one function since the node started, plus the last hour in 10 s slots."""

    __slots__ = (
        "cold_starts", "dur_buckets", "dur_sum", "init_buckets", "init_count", "init_sum", "invocations",
        "name", "r_cold", "r_count", "r_errors", "r_hist", "r_instances", "r_slot", "r_throttled",
        "version", "wait_buckets", "wait_sum",
    )

    def __init__(self, name: str):
        self.name = name
        self.invocations: dict[tuple[str, str], int] = {}  # (status, trigger) → count
        nb = len(SECONDS_BUCKETS) + 1
        self.dur_buckets = [0] * nb
        self.dur_sum = 0.0
        self.wait_buckets = [0] * nb
        self.wait_sum = 0.0
        self.init_buckets = [0] * nb
        self.init_sum = 0.0
        self.init_count = 0
        self.cold_starts = 0
        self.version = 0  # bumped by every observe(): a scrape re-renders only functions whose figures moved
        # ring: slot number (epoch // SLOT_S) each entry belongs to, and its figures
        self.r_slot = [-1] * SLOTS
        self.r_count = [0] * SLOTS
        self.r_errors = [0] * SLOTS
        self.r_cold = [0] * SLOTS
        self.r_throttled = [0] * SLOTS
        self.r_instances = [0] * SLOTS
        self.r_hist: list[list[int] | None] = [None] * SLOTS

    def _entry(self, slot: int) -> int:
        i = slot % SLOTS
        if self.r_slot[i] != slot:
            self.r_slot[i] = slot
            self.r_count[i] = self.r_errors[i] = self.r_cold[i] = self.r_throttled[i] = self.r_instances[i] = 0
            self.r_hist[i] = None
        return i

    def throttled(self, trigger: str, end: float) -> None:
        """A call refused before it ran: counted like a throttled invocation, without its timings."""
        self.version += 1
        key = ("throttled", trigger)
        self.invocations[key] = self.invocations.get(key, 0) + 1
        i = self._entry(int(end // SLOT_S))
        self.r_count[i] += 1
        self.r_errors[i] += 1
        self.r_throttled[i] += 1

    def observe(self, status: str, trigger: str, duration_ms: float, wait_ms: float, cold: bool,
                init_ms: float, end: float) -> None:
        self.version += 1
        key = (status, trigger)
        inv = self.invocations
        inv[key] = inv.get(key, 0) + 1
        self.dur_buckets[bisect_left(_MS_BUCKETS, duration_ms)] += 1
        self.dur_sum += duration_ms
        self.wait_buckets[bisect_left(_MS_BUCKETS, wait_ms)] += 1
        self.wait_sum += wait_ms
        if cold:
            self.cold_starts += 1
            self.init_buckets[bisect_left(_MS_BUCKETS, init_ms)] += 1
            self.init_sum += init_ms
            self.init_count += 1
        self.replay(status, duration_ms, cold, end)

    def replay(self, status: str, duration_ms: float, cold: bool, end: float) -> None:
        """One invocation into the last hour's ring (charts, health, `polyfn top` windows). `observe` adds
        the since-start counters too; a recorded activation from before this node started comes here alone."""
        slot = int(end // SLOT_S)
        i = slot % SLOTS
        if self.r_slot[i] != slot:
            self._entry(slot)
        self.r_count[i] += 1
        if status != "success":
            if status == "throttled":
                self.r_throttled[i] += 1
            self.r_errors[i] += 1
        if cold:
            self.r_cold[i] += 1
        hist = self.r_hist[i]
        if hist is None:
            hist = self.r_hist[i] = [0] * _FINE_N
        hist[bisect_left(FINE_BOUNDS_MS, duration_ms)] += 1

    def sample_instances(self, n: int, now: float) -> None:
        i = self._entry(int(now // SLOT_S))
        if n > self.r_instances[i]:
            self.r_instances[i] = n

    def window(self, now: float, seconds: float) -> dict[str, Any]:
        """Figures over the last `seconds` (rounded to whole slots, the current partial one included)."""
        cur = int(now // SLOT_S)
        n_slots = max(1, min(SLOTS, int(-(-seconds // SLOT_S))))
        count = errors = cold = throttled = 0
        hist = [0] * _FINE_N
        for slot in range(cur - n_slots + 1, cur + 1):
            i = slot % SLOTS
            if self.r_slot[i] != slot:
                continue
            count += self.r_count[i]
            errors += self.r_errors[i]
            cold += self.r_cold[i]
            throttled += self.r_throttled[i]
            h = self.r_hist[i]
            if h is not None:
                for j, v in enumerate(h):
                    if v:
                        hist[j] += v
        elapsed = max(now - (cur - n_slots + 1) * SLOT_S, 1.0)
        return {
            "invocations": count, "errors": errors, "throttled": throttled, "cold_starts": cold,
            "rps": count / elapsed, "p50_ms": quantile(hist, 0.5), "p99_ms": quantile(hist, 0.99),
        }

    def series(self, now: float, seconds: float = SLOTS * SLOT_S) -> list[dict[str, Any]]:
        """One point per slot over the last `seconds`, oldest first (empty slots are zeros)."""
        cur = int(now // SLOT_S)
        n_slots = max(1, min(SLOTS, int(-(-seconds // SLOT_S))))
        out = []
        for slot in range(cur - n_slots + 1, cur + 1):
            i = slot % SLOTS
            if self.r_slot[i] != slot:
                out.append({"t": slot * SLOT_S, "invocations": 0, "errors": 0, "cold_starts": 0,
                            "p50_ms": None, "p99_ms": None, "instances": 0})
                continue
            h = self.r_hist[i] or []
            out.append({
                "t": slot * SLOT_S, "invocations": self.r_count[i], "errors": self.r_errors[i],
                "cold_starts": self.r_cold[i], "p50_ms": quantile(h, 0.5) if h else None,
                "p99_ms": quantile(h, 0.99) if h else None, "instances": self.r_instances[i],
            })
        return out


class Counter:
    """A labelled counter kept as plain ints; `inc` is cheap enough for any hot path."""

    __slots__ = ("help", "labelnames", "name", "values")

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...]):
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, n: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + n


class _Gauge:
    __slots__ = ("fn", "help", "labelnames", "name")

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...],
                 fn: Callable[[], dict[tuple[str, ...], float]]):
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self.fn = fn


def _strip_total(name: str) -> str:
    # prometheus-client appends `_total` to counter families itself.
    return name[:-6] if name.endswith("_total") else name


def _hist_family(name: str, help: str, label: str, rows: Iterable[tuple[str, list[int], float]]) -> Metric:
    fam = HistogramMetricFamily(name, help, labels=[label])
    for value, buckets, total_ms in rows:
        cum = 0
        out = []
        for bound, n in zip((*SECONDS_BUCKETS, float("inf")), buckets, strict=True):
            cum += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), cum))
        fam.add_metric([value], out, total_ms / 1000)
    return fam


# -- Prometheus text, written directly ---------------------------------------------------------------------
# generate_latest() builds a Sample object and formats every value of every label set on each scrape: with
# many functions that is milliseconds per scrape on the event loop (~16 ms for 50 functions, ~170 ms for 500).
# render() writes the same text itself and keeps each function's lines until its figures change, so a
# scrape costs little more than joining cached strings. `collect()` (the registry) stays the reference:
# tests/observe/test_metrics.py checks that both give the same samples.

_LE = (*(floatToGoString(b) for b in SECONDS_BUCKETS), "+Inf")


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    inner = ",".join(f'{n}="{_esc(str(v))}"' for n, v in sorted(zip(names, values, strict=True)))
    return "{" + inner + "}" if inner else ""


def _head(name: str, help: str, kind: str) -> str:
    help = help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {help}\n# TYPE {name} {kind}\n"


def _hist_text(name: str, label: str, buckets: list[int], total_ms: float) -> str:
    out = []
    cum = 0
    for le, n in zip(_LE, buckets, strict=True):
        cum += n
        out.append(f'{name}_bucket{{{label},le="{le}"}} {floatToGoString(cum)}\n')
    out.append(f"{name}_count{{{label}}} {floatToGoString(cum)}\n{name}_sum{{{label}}} "
               f"{floatToGoString(total_ms / 1000)}\n")
    return "".join(out)


_FN_FAMILIES = (
    ("polyfn_invocations_total", "Invocations by function, status and trigger.", "counter"),
    ("polyfn_invocation_duration_seconds",
     "Invocation duration seen by the caller (wait + init + run), by function.", "histogram"),
    ("polyfn_queue_wait_seconds",
     "Time an invocation waited for an instance (includes a cold start), by function.", "histogram"),
    ("polyfn_cold_starts_total", "Invocations that waited for a new instance.", "counter"),
    ("polyfn_init_duration_seconds", "Instance start-up time (fork to ready) of cold starts, by function.",
     "histogram"),
)


def _function_text(fs: FunctionStats, name: str | None = None) -> tuple[str, ...]:
    """One function's sample lines, per family of _FN_FAMILIES (labelled `name`, default its held name)."""
    lbl = f'function="{_esc(fs.name if name is None else name)}"'
    inv = "".join(f'polyfn_invocations_total{{{lbl},status="{_esc(st)}",trigger="{_esc(tr)}"}} '
                  f"{floatToGoString(n)}\n" for (st, tr), n in list(fs.invocations.items()))
    return (
        inv,
        _hist_text("polyfn_invocation_duration_seconds", lbl, fs.dur_buckets, fs.dur_sum),
        _hist_text("polyfn_queue_wait_seconds", lbl, fs.wait_buckets, fs.wait_sum),
        f"polyfn_cold_starts_total{{{lbl}}} {floatToGoString(fs.cold_starts)}\n",
        _hist_text("polyfn_init_duration_seconds", lbl, fs.init_buckets, fs.init_sum) if fs.init_count else "",
    )


class Metrics(Collector):
    """The node's metrics. `observe()` is the hot-path entry; `render()` produces the Prometheus text."""

    def __init__(self, pools: Callable[[], Iterable[Any]] | None = None, memory_budget_mb: int | None = None):
        self.functions: dict[str, FunctionStats] = {}
        self._pools = pools or (lambda: ())
        #: the pools that may have instances (the instance manager's awake set, set at its start): what `sample`
        #: walks every 2 s instead of every pool
        self.live_pools: Callable[[], Iterable[Any]] | None = None
        self.memory_budget_mb = memory_budget_mb
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, _Gauge] = {}
        self.instance_starts = self.counter(
            "polyfn_instance_starts_total", "Instances started (cold starts and pre-warmed), by function.",
            ("function",))
        self.instance_stops = self.counter(
            "polyfn_instance_stops_total",
            "Instances that ended, by function and reason (keepalive, crashed, killed, evicted).",
            ("function", "reason"))
        self.trigger_errors = self.counter(
            "polyfn_trigger_errors_total",
            "Trigger failures (a delivery that failed, a broker connection that errored), by function, trigger "
            "kind and reason.", ("function", "kind", "reason"))
        self.log_floods = self.counter(
            "polyfn_log_floods_total",
            "Activations whose output hit the per-activation line limit (further lines were dropped).",
            ("function",))
        self.shed_calls = self.counter(
            "polyfn_shed_total",
            "Calls refused (429/503) before they ran, without an activation record, by function and reason "
            "(queue_full, overloaded, wait_timeout, no_memory).", ("function", "reason"))
        self.log_bytes_dropped = self.counter(
            "polyfn_log_bytes_dropped_total",
            "Bytes of function output dropped by the log limits (per activation, per function a second).",
            ("function",))
        # usage metering (observe/usage.py): counted when the activation records are stored, not per call
        self.billed_gb_seconds = self.counter(
            "polyfn_billed_gb_seconds_total",
            "Billed GB-seconds (time on an instance rounded up to 1 ms × configured memory), by function.",
            ("function",))
        self.request_bytes = self.counter(
            "polyfn_request_bytes_total", "Bytes of invocation requests (metered), by function.", ("function",))
        self.response_bytes = self.counter(
            "polyfn_response_bytes_total", "Bytes of invocation responses (metered), by function.", ("function",))
        self._text: dict[str, tuple[int, tuple[str, ...]]] = {}  # function → (version, _function_text)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._sampler: asyncio.Task[None] | None = None
        self.started = time.time()

    # -- hot path ----------------------------------------------------------------------------------------

    def observe(self, act: Activation) -> None:
        fs = self.functions.get(act.function)
        if fs is None:
            fs = self.functions[act.function] = FunctionStats(act.function)
        fs.observe(act.status, act.trigger, act.duration_ms, act.wait_ms, act.cold, act.init_ms, act.end)

    def replay(self, acts: list[Activation], before: float, now: float) -> int:
        """Recorded activations that ended in the last hour and before `before` (the node's start), into the
        functions' rings, so charts and health survive a restart (issue #18). Returns how many were used."""
        used = 0
        for act in acts:
            end = act.end or act.start
            if not (now - SLOTS * SLOT_S < end < before) or act.status in ("pending", "running"):
                continue
            fs = self.functions.get(act.function)
            if fs is None:
                fs = self.functions[act.function] = FunctionStats(act.function)
            fs.replay(act.status, act.duration_ms, act.cold, end)
            fs.version += 1  # (observe bumps it for a live one)
            used += 1
        return used

    def shed(self, function: str, trigger: str, reason: str, now: float | None = None) -> None:
        """A call refused without running (scheduler/shed.py): no activation record, but counted as a
        throttled invocation and in `polyfn_shed_total{function, reason}`."""
        fs = self.functions.get(function)
        if fs is None:
            fs = self.functions[function] = FunctionStats(function)
        fs.throttled(trigger, time.time() if now is None else now)
        self.shed_calls.inc(function, reason)

    # -- API for other components ------------------------------------------------------------------------

    def counter(self, name: str, help: str, labelnames: tuple[str, ...] = ()) -> Counter:
        """A counter exported as `name` (Prometheus style: ends in `_total`). Same name → same object."""
        c = self._counters.get(name)
        if c is None:
            c = self._counters[name] = Counter(name, help, labelnames)
        return c

    def gauge(self, name: str, help: str, labelnames: tuple[str, ...],
              fn: Callable[[], dict[tuple[str, ...], float]]) -> None:
        """A gauge read at scrape time: `fn()` returns {label values tuple: value}. Re-registering replaces."""
        self._gauges[name] = _Gauge(name, help, labelnames, fn)

    # -- history sampling --------------------------------------------------------------------------------

    def sample(self, now: float) -> None:
        """Record each function's instance count into its history (called every few seconds)."""
        per_fn: dict[str, int] = {}
        for pool in (self.live_pools or self._pools)():
            n = len(pool.instances) + pool.starting
            if n:  # (a slot never sampled reads as 0 instances: `series`/`window` check the slot; a node of
                fn = pool.revision.function  # 10,000 mostly idle functions does not touch them all every 2 s)
                per_fn[fn] = per_fn.get(fn, 0) + n
        for fn, n in per_fn.items():
            fs = self.functions.get(fn)
            if fs is None:
                fs = self.functions[fn] = FunctionStats(fn)
            fs.sample_instances(n, now)

    def start(self, interval: float = 2.0) -> None:
        async def run() -> None:
            while True:
                with one_item(log, "metrics: sampling instances"):
                    self.sample(time.time())
                await asyncio.sleep(interval)

        self._sampler = asyncio.create_task(run())

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    def forget(self, function: str) -> None:
        """Drop a deleted function's series: its history, its invocation counters and histograms, and every
        labelled counter whose first label is the function (instance starts and stops, trigger errors, …)."""
        self.functions.pop(function, None)
        self._text.pop(function, None)
        for c in self._counters.values():
            if c.labelnames[:1] == ("function",):
                for labels in [k for k in c.values if k[0] == function]:
                    del c.values[labels]

    # -- reading -----------------------------------------------------------------------------------------

    def instances(self) -> dict[str, dict[str, int]]:
        """Live instances per function: starting, idle, busy, queued (waiting callers), memory_mb."""
        out: dict[str, dict[str, int]] = {}
        for pool in self._pools():
            fn = pool.revision.function
            d = out.setdefault(fn, {"starting": 0, "idle": 0, "busy": 0, "queued": 0, "memory_mb": 0})
            st = pool.stats()
            for k in ("starting", "idle", "busy", "queued"):
                d[k] += st[k]
            d["memory_mb"] += (st["starting"] + st["idle"] + st["busy"]) * pool.revision.spec.memory
        return out

    def render(self, namespace: str | None = None) -> tuple[bytes, str]:
        """The Prometheus text (what `GET /metrics` serves): every series, or with `namespace` only that
        namespace's functions (and workflows), labelled by their local names, plus the node's unlabelled
        series; series labelled by anything else are left out of a namespace's view (docs/tenancy.md)."""
        def mine(labels: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, ...] | None:
            if namespace is None:
                return labels
            if not names:
                return labels
            if names[0] not in ("function", "workflow") or not tenancy.owns(namespace, labels[0]):
                return None
            return (tenancy.local(labels[0]), *labels[1:])

        families: list[list[str]] = [[] for _ in _FN_FAMILIES]
        cache = self._text
        for fs in list(self.functions.values()):
            if namespace is not None and not tenancy.owns(namespace, fs.name):
                continue
            if namespace not in (None, tenancy.DEFAULT):  # local names differ from held: not cached
                hit = (fs.version, _function_text(fs, tenancy.local(fs.name)))
            else:
                hit = cache.get(fs.name)
                if hit is None or hit[0] != fs.version:
                    hit = cache[fs.name] = (fs.version, _function_text(fs))
            for fam, text in zip(families, hit[1], strict=True):
                if text:
                    fam.append(text)
        out = []
        for (name, help, kind), lines in zip(_FN_FAMILIES, families, strict=True):
            out.append(_head(name, help, kind))
            out.extend(lines)
        inst = [_head("polyfn_instances", "Live instances by function and state (starting, idle, busy).", "gauge")]
        queued = [_head("polyfn_queue_depth", "Invocations waiting for an instance, by function.", "gauge")]
        mem = 0
        for fn, d in sorted(self.instances().items()):
            if (shown := mine((fn,), ("function",))) is None:
                continue
            lbl = f'function="{_esc(shown[0])}"'
            for state in ("starting", "idle", "busy"):
                inst.append(f'polyfn_instances{{{lbl},state="{state}"}} {floatToGoString(d[state])}\n')
            queued.append(f"polyfn_queue_depth{{{lbl}}} {floatToGoString(d['queued'])}\n")
            mem += d["memory_mb"]
        out += inst + queued
        out.append(_head("polyfn_memory_reserved_bytes",
                         "Memory limits of all live instances added up (what the node has promised).", "gauge"))
        out.append(f"polyfn_memory_reserved_bytes {floatToGoString(mem * 1024 * 1024)}\n")
        if self.memory_budget_mb:
            out.append(_head("polyfn_memory_budget_bytes", "The node's memory budget for instances.", "gauge"))
            out.append(f"polyfn_memory_budget_bytes {floatToGoString(self.memory_budget_mb * 1024 * 1024)}\n")
        for c in list(self._counters.values()):
            out.append(_head(c.name, c.help, "counter"))
            out.extend(f"{c.name}{_labels(c.labelnames, shown)} {floatToGoString(n)}\n"
                       for labels, n in list(c.values.items())
                       if (shown := mine(labels, c.labelnames)) is not None)
        for g in list(self._gauges.values()):
            out.append(_head(g.name, g.help, "gauge"))
            try:
                values = g.fn()
            except Exception:
                values = {}
            out.extend(f"{g.name}{_labels(g.labelnames, shown)} {floatToGoString(v)}\n"
                       for labels, v in values.items()
                       if (shown := mine(labels, g.labelnames)) is not None)
        out.append(_head("polyfn_start_time_seconds", "When this node started (epoch seconds).", "gauge"))
        out.append(f"polyfn_start_time_seconds {floatToGoString(self.started)}\n")
        return "".join(out).encode(), CONTENT_TYPE_LATEST

    def render_reference(self) -> bytes:
        """The same metrics through prometheus-client's generate_latest (slower; for tests and comparison)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        fns = list(self.functions.values())
        inv = CounterMetricFamily("polyfn_invocations", "Invocations by function, status and trigger.",
                                  labels=["function", "status", "trigger"])
        for fs in fns:
            for (status, trigger), n in fs.invocations.items():
                inv.add_metric([fs.name, status, trigger], n)
        yield inv
        yield _hist_family("polyfn_invocation_duration_seconds",
                           "Invocation duration seen by the caller (wait + init + run), by function.", "function",
                           ((fs.name, fs.dur_buckets, fs.dur_sum) for fs in fns))
        yield _hist_family("polyfn_queue_wait_seconds",
                           "Time an invocation waited for an instance (includes a cold start), by function.",
                           "function", ((fs.name, fs.wait_buckets, fs.wait_sum) for fs in fns))
        cold = CounterMetricFamily("polyfn_cold_starts", "Invocations that waited for a new instance.",
                                   labels=["function"])
        for fs in fns:
            cold.add_metric([fs.name], fs.cold_starts)
        yield cold
        yield _hist_family("polyfn_init_duration_seconds",
                           "Instance start-up time (fork to ready) of cold starts, by function.", "function",
                           ((fs.name, fs.init_buckets, fs.init_sum) for fs in fns if fs.init_count))
        inst = GaugeMetricFamily("polyfn_instances", "Live instances by function and state (starting, idle, busy).",
                                 labels=["function", "state"])
        queued = GaugeMetricFamily("polyfn_queue_depth", "Invocations waiting for an instance, by function.",
                                   labels=["function"])
        mem = 0
        for fn, d in sorted(self.instances().items()):
            for state in ("starting", "idle", "busy"):
                inst.add_metric([fn, state], d[state])
            queued.add_metric([fn], d["queued"])
            mem += d["memory_mb"]
        yield inst
        yield queued
        yield GaugeMetricFamily("polyfn_memory_reserved_bytes",
                                "Memory limits of all live instances added up (what the node has promised).",
                                value=mem * 1024 * 1024)
        if self.memory_budget_mb:
            yield GaugeMetricFamily("polyfn_memory_budget_bytes", "The node's memory budget for instances.",
                                    value=self.memory_budget_mb * 1024 * 1024)
        for c in list(self._counters.values()):
            fam = CounterMetricFamily(_strip_total(c.name), c.help, labels=list(c.labelnames))
            for labels, n in list(c.values.items()):
                fam.add_metric(list(labels), n)
            yield fam
        for g in list(self._gauges.values()):
            fam = GaugeMetricFamily(g.name, g.help, labels=list(g.labelnames))
            try:
                values = g.fn()
            except Exception:
                values = {}
            for labels, v in values.items():
                fam.add_metric(list(labels), v)
            yield fam
        yield GaugeMetricFamily("polyfn_start_time_seconds", "When this node started (epoch seconds).",
                                value=self.started)
