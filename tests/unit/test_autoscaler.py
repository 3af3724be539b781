"""The KPA decision logic with a fake clock: each case replays (time, in-flight, queued, ready) samples
and checks the decisions."""

from __future__ import annotations

import pytest

from polyfn.scheduler.autoscaler import AutoscalerConfig, AutoscalerState, Stats, decide


def run(samples: list[tuple[float, int, int, int]], **cfg):  # type: ignore[no-untyped-def]
    config = AutoscalerConfig(**{"max_instances": 100, **cfg})
    state = AutoscalerState()
    return [decide(t, Stats(inflight, queued, ready), state, config) for t, inflight, queued, ready in samples]


def steady(value: int, ready: int, start: float = 0, seconds: float = 60, step: float = 2):  # type: ignore[no-untyped-def]
    n = int(seconds / step)
    return [(start + i * step, value, 0, ready) for i in range(n)]


def test_no_data_holds_and_never_scales_to_zero() -> None:
    d = run([(0, 0, 0, 5)])[0]
    assert not d.valid and d.desired == 5


def test_no_data_still_honours_queueing() -> None:
    d = run([(0, 0, 7, 0)])[0]
    assert not d.valid and d.desired == 7


CASES = [
    # name, samples, config, expected final desired, expected final panic
    ("steady load at target", steady(4, 4), {}, 4, False),
    ("concurrency 10 packs 40 in-flight into 4", steady(40, 4), {"target": 10}, 4, False),
    ("burst from zero scales up at once", [(0, 0, 0, 0), (2, 0, 200, 0)], {}, 100, True),
    ("burst respects max_instances", [(0, 0, 0, 0), (2, 0, 200, 0)], {"max_instances": 7}, 7, True),
    ("idle never goes below min_instances", steady(0, 3, seconds=600), {"min_instances": 2}, 2, False),
]


@pytest.mark.parametrize(("name", "samples", "cfg", "desired", "panic"), CASES, ids=[c[0] for c in CASES])
def test_table(name: str, samples: list, cfg: dict, desired: int, panic: bool) -> None:
    decisions = run(samples, **cfg)
    assert decisions[-1].valid
    assert decisions[-1].desired == desired
    assert decisions[-1].panic is panic


def test_panic_mode_holds_the_peak_until_a_calm_stable_window() -> None:
    # 60 s at 2 in-flight on 2 instances, then a spike to 10 for 6 s, then back to 2
    samples = steady(2, 2) + [(60 + i, 10, 0, 2) for i in range(0, 6, 2)]
    calm = [(66 + i, 2, 0, 10) for i in range(0, 80, 2)]
    decisions = run(samples + calm)
    spike = decisions[len(samples) - 1]
    assert spike.panic and spike.desired >= 10  # 2× target reached: panic, jump to the panic count
    in_panic = decisions[len(samples): len(samples) + 25]
    assert all(d.panic and d.desired >= 10 for d in in_panic)  # no scale-down while panicking
    assert not decisions[-1].panic  # a whole stable window without the panic condition ends it


def test_scale_down_is_gradual() -> None:
    # 20 busy instances, then load stops: each decision at most halves, reaching 0 eventually
    samples = steady(20, 20)
    after = [(60 + i, 0, 0, 20) for i in range(2, 200, 2)]
    decisions = run(samples + after)
    ready = 20
    seen = []
    # replay with `ready` following the decisions, as the pool would
    config = AutoscalerConfig(max_instances=100)
    state = AutoscalerState()
    for t, v, q, r in samples:
        decide(t, Stats(v, q, r), state, config)
    for t, _v, _q, _r in after:
        d = decide(t, Stats(0, 0, ready), state, config)
        assert d.desired >= ready // 2  # never more than halving in one step
        seen.append(d.desired)
        ready = d.desired
    assert seen[0] == 20  # the 60 s average is still high right after the load stops
    assert seen[-1] == 0
    assert decisions[-1].desired <= 20


def test_queueing_scales_up_even_when_the_average_is_low() -> None:
    samples = [*steady(0, 1), (60, 1, 5, 1)]
    d = run(samples)[-1]
    assert d.desired >= 6


@pytest.mark.parametrize(("field", "value", "words"), [
    ("max_instances", 0, "at least 1"),
    ("max_instances", -3, "at least 1"),
    ("min_instances", -1, "cannot be negative"),
    ("keepalive_policy", "lru", "fixed, hybrid or"),
])
def test_bad_scaling_limits_are_rejected_clearly(field: str, value: object, words: str) -> None:
    from polyfn.model import FunctionSpec, SpecError, validate_spec

    with pytest.raises(SpecError) as e:
        validate_spec(FunctionSpec(name="f", **{field: value}), 60, 1024, 100)
    assert f"{field}={value!r}" in str(e.value) and words in str(e.value)


def test_good_scaling_limits_pass() -> None:
    from polyfn.model import FunctionSpec, validate_spec

    validate_spec(FunctionSpec(name="f", max_instances=1, min_instances=1, keepalive_policy="hybrid"), 60, 1024, 100)
