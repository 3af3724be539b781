"""Concurrency-based autoscaling: Knative's KPA model as pure logic.

`decide(now, stats, state, config)` takes one sample of a pool (in-flight invocations, queued callers,
ready and starting instances), records it into `state`, and returns the instance count the pool should
have. Nothing here reads a clock or does I/O, so the tests drive it with a fake clock and the pool runs
it from a ticker (`Pool.autoscale`, every `config.tick` seconds).

The model (https://knative.dev/docs/serving/autoscaling/kpa-specific/):

* demand = in-flight + queued, averaged over a **stable window** (60 s) and a **panic window** (6 s);
* desired = ceil(average demand / target), target = the function's `concurrency` (in-flight per instance);
* **panic** starts when the panic-window desired count reaches `panic_threshold` (2×) the ready
  instances; while panicking the count only goes up, and panic ends once the panic condition has not
  held for a whole stable window;
* **scale up at once** when callers queue: never fewer than ceil(demand now / target);
* **scale down gradually**: by at most a factor `max_scale_down_rate` per decision;
* always within [min_instances, max_instances].

With no sample in the stable window (a pool just created, a ticker that stalled) the decision is
`valid=False` and keeps the current count: missing data never means "scale to zero".
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AutoscalerConfig:
    target: float = 1.0  # in-flight invocations per instance (the function's concurrency)
    min_instances: int = 0
    max_instances: int = 10
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0  # panic when the panic-window desired count ≥ 2× ready instances
    max_scale_down_rate: float = 2.0  # shrink to no less than current / 2 per decision
    tick: float = 2.0  # how often the pool calls decide() (informational: the caller owns the clock)


@dataclass(frozen=True)
class Stats:
    """One sample of a pool."""

    inflight: int  # invocations running in its instances
    queued: int  # callers waiting for an instance
    ready: int  # instances that can take work
    starting: int = 0


@dataclass
class AutoscalerState:
    samples: deque[tuple[float, int]] = field(default_factory=deque)  # (time, in-flight + queued)
    panic_since: float | None = None  # when panic mode started (None: not panicking)
    last_panic_signal: float = -math.inf  # last time the panic condition held
    desired: int | None = None  # the last valid decision


@dataclass(frozen=True)
class Decision:
    desired: int
    panic: bool
    valid: bool  # False: not enough data, `desired` is the current count (hold)
    stable_avg: float = 0.0
    panic_avg: float = 0.0


def _average(samples: deque[tuple[float, int]], since: float) -> tuple[float, int]:
    total = 0
    n = 0
    for t, v in reversed(samples):
        if t < since:
            break
        total += v
        n += 1
    return (total / n if n else 0.0), n


def decide(now: float, stats: Stats, state: AutoscalerState, config: AutoscalerConfig) -> Decision:
    demand = stats.inflight + stats.queued
    current = stats.ready + stats.starting
    samples = state.samples
    samples.append((now, demand))
    horizon = now - config.stable_window
    while samples and samples[0][0] < horizon:
        samples.popleft()
    lo, hi = config.min_instances, config.max_instances

    def clamp(n: int) -> int:
        return max(lo, min(hi, n))

    # Need data from more than one tick before trusting an average of zero; until then hold (but still
    # honour queueing and the bounds: those need no history).
    if len(samples) < 2:
        hold = max(current, math.ceil(demand / config.target))
        return Decision(clamp(hold), state.panic_since is not None, False)

    target = config.target
    stable_avg, _ = _average(samples, now - config.stable_window)
    panic_avg, _ = _average(samples, now - config.panic_window)
    want_stable = math.ceil(stable_avg / target)
    want_panic = math.ceil(panic_avg / target)

    ready = max(stats.ready, 1)
    if want_panic / ready >= config.panic_threshold and want_panic > stats.ready:
        state.last_panic_signal = now
        if state.panic_since is None:
            state.panic_since = now
    elif state.panic_since is not None and now - state.last_panic_signal >= config.stable_window:
        state.panic_since = None
    panic = state.panic_since is not None

    if panic:
        desired = max(want_panic, want_stable, state.desired or 0)  # never scale down while panicking
    else:
        desired = want_stable
        floor = math.floor(current / config.max_scale_down_rate)  # gradual: at most halve per decision
        desired = max(desired, floor) if desired < current else desired
    desired = max(desired, math.ceil(demand / target))  # queueing now: scale up at once
    desired = clamp(desired)
    state.desired = desired
    return Decision(desired, panic, True, stable_avg, panic_avg)
