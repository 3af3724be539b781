"""Keep-alive policies as pure logic: fixed windows, the hybrid histogram, representativeness, the adaptive
window's trade of cold starts against idle memory and the node's prior."""

from __future__ import annotations

import pytest

from polyfn.scheduler.keepalive import (
    AdaptivePolicy,
    FixedPolicy,
    HybridConfig,
    HybridPolicy,
    IdlePrior,
    ScaledPolicy,
    Window,
    best_window,
    make_policy,
)


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


@pytest.mark.parametrize("name,cls", [("fixed", FixedPolicy), ("hybrid", HybridPolicy), ("adaptive", AdaptivePolicy)])
def test_make_policy(name: str, cls: type) -> None:
    assert isinstance(make_policy(name, 600), cls)


def test_make_policy_unknown() -> None:
    with pytest.raises(ValueError, match="fixed, hybrid or adaptive"):
        make_policy("lru", 600)


# --- adaptive -----------------------------------------------------------------------------------------------
# k = memory / cold_start_worth: the cost of one loaded idle minute, in cold starts (128 MB at 70 GB·min ≈ 0.0018)


@pytest.mark.parametrize("weights,k,expected", [
    ({}, 0.002, (0, 0)),  # nothing seen: no window is worth anything
    ({0: 10}, 0.002, (0, 1)),  # calls in a row: keep for one bin
    ({5: 10}, 0.002, (5, 6)),  # every call 5 bins after the last: pre-warm at 5, keep one bin
    ({5: 10}, 0.5, (5, 6)),  # ... even at a high memory price: only one bin is paid per idle time
    ({0: 5, 100: 5}, 0.002, (0, 101)),  # 100 bins × 5 idle times × 0.002 = 1 < the 5 cold starts avoided
    ({0: 5, 100: 5}, 0.05, (100, 101)),  # 0.05: 100 bins cost more than 5 calls are worth; pre-warming for
    # the late calls (½ bin each) is cheaper than keeping one bin after every call (½ or 1 bin each)
    ({0: 1, 240: 20}, 0.002, (0, 1)),  # idle times beyond the range: only the short one is worth covering
    ({0: 1, 240: 20}, 0.1, (0, 0)),  # ... and not even that when 20 long waits pay for its bin
    ({3: 1}, 2.5, (0, 0)),  # one call worth less than the half bin it costs
])
def test_best_window_trades_cold_starts_for_memory(weights: dict[int, float], k: float,
                                                   expected: tuple[int, int]) -> None:
    assert best_window(weights, 240, k) == expected


def test_adaptive_periodic_function_is_prewarmed_just_in_time() -> None:
    p = AdaptivePolicy(memory_mb=256)
    for _ in range(20):
        p.observe_idle(30 * 60 + 20)  # every ~30 minutes
    assert p.window() == Window(30 * 60.0, 60.0)


def test_adaptive_heavier_functions_get_shorter_windows() -> None:
    def window(memory_mb: float) -> Window:
        p = AdaptivePolicy(memory_mb)
        for minutes in [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144] * 3:
            p.observe_idle(minutes * 60.0)
        return p.window()

    light, heavy = window(128), window(4096)
    assert light.prewarm == heavy.prewarm == 0
    assert heavy.keepalive < light.keepalive


def test_adaptive_falls_back_to_the_fixed_keepalive_with_nothing_seen() -> None:
    assert AdaptivePolicy(128, fallback_keepalive=300).window() == Window(0.0, 300)
    assert AdaptivePolicy(128, prior=IdlePrior(), fallback_keepalive=300).window() == Window(0.0, 300)


def test_adaptive_starts_from_the_node_prior_then_its_own_idle_times() -> None:
    prior = IdlePrior()
    for _ in range(3):  # three other functions, each called every 10 minutes
        other = AdaptivePolicy(128, prior=prior)
        for _ in range(5):
            other.observe_idle(10 * 60 + 5)
    assert prior.functions == 3 and prior.shares() == [(10, 1.0)]
    new = AdaptivePolicy(128, prior=prior)
    assert new.window() == Window(600.0, 60.0)  # nothing of its own yet: the prior's pattern
    for _ in range(20):
        new.observe_idle(2 * 60 + 5)  # but it is called every 2 minutes
    assert new.window() == Window(120.0, 60.0)
    assert dict(prior.shares()) == pytest.approx({10: 0.75, 2: 0.25})  # each function weighs the same


def test_idle_prior_drops_rare_bins() -> None:
    prior = IdlePrior(min_share=0.1)
    p = AdaptivePolicy(128, prior=prior)
    for minutes in [1] * 19 + [50]:
        p.observe_idle(minutes * 60.0)
    assert prior.shares() == [(1, pytest.approx(0.95))]


def test_a_scaled_policy_decides_in_its_own_clock() -> None:
    """`keepalive_time_scale` 24: a real 2.5 s is a minute of the policy's clock — a hybrid policy fed idle
    times of 2.5 real seconds learns one-minute idle times and answers its window in real seconds."""
    p = make_policy("hybrid", 600, time_scale=24)
    assert isinstance(p, ScaledPolicy) and p.name == "hybrid"
    assert p.window() == Window(0.0, 25.0)  # its fallback: 600 s of its clock
    for _ in range(20):
        p.observe_idle(5.0)  # 5 real seconds = 2 minutes of its clock: bin 2
    inner = p.inner
    assert isinstance(inner, HybridPolicy) and inner.bins[2] == 20 and inner.representative()
    w, iw = p.window(), inner.window()
    assert iw.prewarm > 0 and w == Window(iw.prewarm / 24, iw.keepalive / 24)
    assert p.window() is w  # the same window until the inner one changes
    assert not isinstance(make_policy("fixed", 600), ScaledPolicy)  # scale 1: the policy itself
