"""Metrics: hot-path counters, the Prometheus collector, history windows and quantiles (simulated time)."""

from __future__ import annotations

import pytest

from polyfn.model import Activation
from polyfn.observe.metrics import FINE_BOUNDS_MS, SLOT_S, SLOTS, FunctionStats, Metrics, quantile

T0 = 1_800_000_000.0  # a fixed "now" on a slot boundary


def act(fn: str = "f", status: str = "success", trigger: str = "http", ms: float = 2.0, cold: bool = False,
        end: float = T0, init_ms: float = 0.0) -> Activation:
    return Activation(id="a" * 32, function=fn, revision=1, trigger=trigger, start=end - ms / 1000, end=end,
                      duration_ms=ms, wait_ms=ms / 2, cold=cold, init_ms=init_ms, status=status)


def parse(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def test_prometheus_text() -> None:
    m = Metrics()
    for _ in range(3):
        m.observe(act())
    m.observe(act(status="error", trigger="invoke", ms=700.0))
    m.observe(act(cold=True, init_ms=12.0))
    m.trigger_errors.inc("f", "cron", "enqueue_failed")
    m.gauge("polyfn_async_backlog", "Queued.", ("function",), lambda: {("f",): 7})
    body, ctype = m.render()
    assert ctype.startswith("text/plain")
    got = parse(body.decode())
    assert got['polyfn_invocations_total{function="f",status="success",trigger="http"}'] == 4
    assert got['polyfn_invocations_total{function="f",status="error",trigger="invoke"}'] == 1
    assert got['polyfn_invocation_duration_seconds_bucket{function="f",le="0.0025"}'] == 4
    assert got['polyfn_invocation_duration_seconds_bucket{function="f",le="1.0"}'] == 5
    assert got['polyfn_invocation_duration_seconds_count{function="f"}'] == 5
    assert got['polyfn_invocation_duration_seconds_sum{function="f"}'] == pytest.approx(0.708)
    assert got['polyfn_cold_starts_total{function="f"}'] == 1
    assert got['polyfn_init_duration_seconds_bucket{function="f",le="0.025"}'] == 1
    assert got['polyfn_trigger_errors_total{function="f",kind="cron",reason="enqueue_failed"}'] == 1
    assert got['polyfn_async_backlog{function="f"}'] == 7
    assert got["polyfn_memory_reserved_bytes"] == 0


def test_a_namespace_view_shows_its_series_by_local_name_and_nothing_of_others() -> None:
    m = Metrics()
    for fn in ("f", "team-a~f", "team-a~g", "team-b~f"):
        m.observe(act(fn))
        m.trigger_errors.inc(fn, "cron", "x")
    m.gauge("polyfn_async_backlog", "Queued.", ("function",), lambda: {("team-b~f",): 7, ("team-a~g",): 2})
    m.gauge("polyfn_topic_lag", "By stream.", ("stream",), lambda: {("team-b-orders",): 3})
    m.gauge("polyfn_memory_budget_used_ratio", "Node-wide.", (), lambda: {(): 0.5})
    everything = parse(m.render()[0].decode())
    assert everything['polyfn_invocations_total{function="team-b~f",status="success",trigger="http"}'] == 1
    assert everything['polyfn_topic_lag{stream="team-b-orders"}'] == 3
    a = m.render("team-a")[0].decode()
    got = parse(a)
    assert got['polyfn_invocations_total{function="f",status="success",trigger="http"}'] == 1  # team-a~f
    assert got['polyfn_invocations_total{function="g",status="success",trigger="http"}'] == 1
    assert got['polyfn_trigger_errors_total{function="f",kind="cron",reason="x"}'] == 1
    assert got['polyfn_async_backlog{function="g"}'] == 2 and got["polyfn_memory_budget_used_ratio"] == 0.5
    assert "team-b" not in a and "~" not in a and 'polyfn_async_backlog{function="f"}' not in got
    default = m.render("default")[0].decode()
    assert 'function="f"' in default and "team-" not in default
    assert m.render("default")[0] == m.render("default")[0]  # (cached text)


def test_same_counter_name_is_the_same_counter() -> None:
    m = Metrics()
    a = m.counter("polyfn_x_total", "x", ("a",))
    assert m.counter("polyfn_x_total", "x", ("a",)) is a


@pytest.mark.parametrize(("values", "q", "lo", "hi"), [
    ([1.0] * 100, 0.5, 0.9, 1.1),
    ([1.0] * 99 + [500.0], 0.99, 0.9, 1.1),
    ([1.0] * 98 + [500.0] * 2, 0.99, 450, 550),
    ([0.01], 0.5, 0.0, 0.05),
])
def test_quantiles_within_a_bucket(values: list[float], q: float, lo: float, hi: float) -> None:
    fs = FunctionStats("f")
    for v in values:
        fs.observe("success", "http", v, 0.0, False, 0.0, T0)
    est = fs.window(T0, 60)["p99_ms" if q == 0.99 else "p50_ms"]
    assert lo <= est <= hi


def test_quantile_of_nothing_is_none() -> None:
    assert quantile([0] * (len(FINE_BOUNDS_MS) + 1), 0.5) is None


def test_window_and_series_with_simulated_time() -> None:
    fs = FunctionStats("f")
    # 10 calls per slot for 30 slots (5 minutes), every 3rd slot has an error and a cold start
    for s in range(30):
        t = T0 + s * SLOT_S + 1
        for i in range(10):
            fs.observe("error" if (s % 3 == 0 and i == 0) else "success", "http", 5.0, 0.0,
                       s % 3 == 0 and i == 0, 3.0, t)
    now = T0 + 29 * SLOT_S + 5
    w = fs.window(now, 60)  # the last 6 slots
    assert w["invocations"] == 60 and w["errors"] == 2 and w["cold_starts"] == 2
    assert w["rps"] == pytest.approx(60 / 55)
    pts = fs.series(now, 600)
    assert len(pts) == 60
    assert sum(p["invocations"] for p in pts) == 300
    assert pts[-1]["t"] == T0 + 29 * SLOT_S and pts[-1]["p50_ms"] == pytest.approx(5.0, rel=0.1)
    # an hour later the ring has wrapped: old slots never count again
    later = now + SLOTS * SLOT_S
    assert fs.window(later, 3600)["invocations"] == 0
    fs.observe("success", "http", 1.0, 0.0, False, 0.0, later)
    assert fs.window(later, 3600)["invocations"] == 1


def test_instances_are_sampled_from_pools() -> None:
    class Spec:
        memory = 128

    class Rev:
        function = "f"
        spec = Spec()

    class Pool:
        revision = Rev()
        instances = [1, 2]
        starting = 1

        def stats(self) -> dict[str, int]:
            return {"starting": 1, "idle": 1, "busy": 1, "queued": 4}

    m = Metrics(lambda: [Pool()])
    m.sample(T0)
    assert m.functions["f"].series(T0, 10)[-1]["instances"] == 3
    got = parse(m.render()[0].decode())
    assert got['polyfn_instances{function="f",state="busy"}'] == 1
    assert got['polyfn_queue_depth{function="f"}'] == 4
    assert got["polyfn_memory_reserved_bytes"] == 3 * 128 * 1024 * 1024


def _samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_fast_render_matches_prometheus_client() -> None:
    """render() writes the text itself (and caches per function); it must say exactly what prometheus-client's
    generate_latest says about the same registry, including after more observations and odd label values."""
    m = Metrics(memory_budget_mb=512)
    odd = 'we"ird\\name\nx'
    for fn in ("f", "g", odd):
        m.observe(act(fn=fn))
        m.observe(act(fn=fn, status="error", trigger="cron", ms=40.0, cold=True, init_ms=7.0))
    m.trigger_errors.inc(odd, "cron", "enqueue_failed")
    m.gauge("polyfn_async_backlog", "Queued.", ("function",), lambda: {("f",): 7, (odd,): 1})
    first = m.render()[0].decode()
    assert _samples(first) == _samples(m.render_reference().decode())
    m.observe(act(fn="g", ms=3000.0))  # only g changed: its cached lines must be re-rendered
    again = m.render()[0].decode()
    assert _samples(again) == _samples(m.render_reference().decode())
    assert _samples(again) != _samples(first)
    m.forget("g")
    assert 'function="g"' not in m.render()[0].decode()
