"""A Retrier's delay before its next attempt: pure, with the random source passed in."""

from __future__ import annotations

import random

from polyfn.workflows.definition import Retrier


def delay(r: Retrier, done: int, rng: random.Random) -> float:
    """Seconds before retry number `done + 1`: IntervalSeconds × BackoffRate^done, at most MaxDelaySeconds;
    with JitterStrategy FULL a uniform draw between 0 and that (AWS's "full jitter")."""
    d = float(r.interval) * float(r.backoff_rate) ** done
    if r.max_delay is not None:
        d = min(d, float(r.max_delay))
    if r.jitter == "FULL":
        d = rng.uniform(0, d)
    return d
