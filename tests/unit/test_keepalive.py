"""Keep-alive policies as pure logic: fixed windows, the hybrid histogram, representativeness."""

from __future__ import annotations

import pytest

from polyfn.scheduler.keepalive import FixedPolicy, HybridConfig, HybridPolicy, Window, make_policy


def test_fixed_policy_ignores_history() -> None:
    p = FixedPolicy(600)
    for idle in (1, 5000, 30):
        p.observe_idle(idle)
    assert p.window() == Window(0.0, 600)


def test_hybrid_falls_back_until_representative() -> None:
    p = HybridPolicy(HybridConfig(fallback_keepalive=600, min_samples=10))
    for _ in range(9):
        p.observe_idle(3600)
    assert p.window() == Window(0.0, 600)  # too few samples


def test_hybrid_periodic_function_prewarms_before_the_next_call() -> None:
    p = HybridPolicy()
    for _ in range(30):
        p.observe_idle(59 * 60 + 5)  # a timer every hour: idle ~59 minutes
    w = p.window()
    assert p.representative()
    assert 50 * 60 <= w.prewarm < 59 * 60  # unloaded after use, back before the next call
    assert w.prewarm + w.keepalive > 60 * 60  # still warm when the call comes
    assert w.keepalive < 15 * 60  # a window around the expected call, not an hour of idling


def test_hybrid_out_of_range_idle_times_fall_back() -> None:
    p = HybridPolicy(HybridConfig(fallback_keepalive=300))
    for _ in range(20):
        p.observe_idle(10 * 3600)  # beyond the 4-hour histogram
    assert not p.representative()
    assert p.window() == Window(0.0, 300)


def test_hybrid_window_is_capped() -> None:
    p = HybridPolicy(HybridConfig(max_window=1800, cv_threshold=0.0))
    for minutes in range(0, 200, 2):
        p.observe_idle(minutes * 60)
    assert p.window().keepalive <= 1800


@pytest.mark.parametrize("name,cls", [("fixed", FixedPolicy), ("hybrid", HybridPolicy)])
def test_make_policy(name: str, cls: type) -> None:
    assert isinstance(make_policy(name, 600), cls)


def test_make_policy_unknown() -> None:
    with pytest.raises(ValueError, match="fixed or hybrid"):
        make_policy("lru", 600)
