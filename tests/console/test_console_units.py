"""Console helpers: sessions with a fake clock, health labels, chart geometry, the result cache."""

from __future__ import annotations

from polyfn.console.sessions import ResultCache, Sessions
from polyfn.console.views import chart, health
from polyfn.observe.metrics import FunctionStats


def test_sessions_expire_and_end() -> None:
    now = [100.0]
    s = Sessions(ttl=60, clock=lambda: now[0])
    tok = s.create()
    assert s.valid(tok) and not s.valid("other") and not s.valid(None)
    now[0] = 159.9
    assert s.valid(tok)
    now[0] = 160.0
    assert not s.valid(tok)
    tok2 = s.create()
    s.end(tok2)
    assert not s.valid(tok2)


def test_sessions_are_bounded() -> None:
    s = Sessions(ttl=60, clock=lambda: 0.0, max_sessions=3)
    toks = [s.create() for _ in range(5)]
    assert sum(s.valid(t) for t in toks) == 3 and s.valid(toks[-1])


def test_health() -> None:
    now = 1_800_000_000.0
    assert health(None, False, now) == ("no traffic", "idle")
    assert health(None, True, now)[1] == "bad"
    fs = FunctionStats("f")
    for i in range(10):
        fs.observe("error" if i == 0 else "success", "http", 1.0, 0.0, False, 0.0, now)
    assert health(fs, False, now) == ("degraded (1/10 errors)", "warn")
    for _ in range(20):
        fs.observe("error", "http", 1.0, 0.0, False, 0.0, now)
    assert health(fs, False, now)[1] == "bad"
    fs2 = FunctionStats("g")
    fs2.observe("success", "http", 1.0, 0.0, False, 0.0, now)
    assert health(fs2, False, now) == ("healthy", "ok")


def test_chart_scales_to_the_maximum() -> None:
    c = chart([{"v": 0}, {"v": 5}, {"v": 10}], ("v",), width=100, height=54)
    assert c["max"] == 10
    assert c["lines"][0]["points"] == "0.0,52.0 50.0,27.0 100.0,2.0"
    flat = chart([{"v": None}, {"v": 0}], ("v",), width=10, height=10)
    assert flat["max"] == 0 and flat["lines"][0]["points"] == "0.0,8.0 10.0,8.0"


def test_result_cache_is_bounded_by_bytes() -> None:
    c = ResultCache(max_bytes=10)
    c.put("a", b"12345", "t")
    c.put("b", b"12345", "t")
    c.put("c", b"1", "t")
    assert c.get("a") is None and c.get("b") == (b"12345", "t") and c.get("c") is not None
    c.put("big", b"x" * 11, "t")
    assert c.get("big") is None
