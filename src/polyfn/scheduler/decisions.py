"""The pools' decisions as pure functions, like autoscaler.py and keepalive.py: which idle instances a pool
closes (the reap plan). State, configuration and `now` go in, a value comes out; the pool (pool.py) applies it.
The instance manager's decisions (sandbox layers, memory budget) are in instances/decisions.py. Table-tested in
tests/scheduler/test_decisions.py.
"""

from __future__ import annotations

from collections.abc import Sequence

#: an instance above the autoscaler's desired count is closed once idle this long
SCALEDOWN_IDLE = 30.0


def reap(now: float, idle: Sequence[tuple[float, int]], live: int, floor: int, prewarm: float, keepalive: float,
         busy: bool, last_end: float, desired: int | None) -> list[tuple[int, bool]]:
    """Which of a pool's `idle` instances (last used, invocations in flight) to close now: (index, expired),
    least recently used first; `expired` says the keep-alive policy let it go (else the autoscaler did).

    `live` ready instances; never fewer than `floor` (min_instances, or one while a pre-warm window lasts).
    Keep-alive (`prewarm`, `keepalive`: the policy's window): an instance idle for `keepalive` goes; a policy
    that pre-warms unloads instances right after use once the function is not `busy`. The policy keeps the
    most recently used instance while its window lasts (`last_end`: when the last invocation ended). Autoscaler
    (`desired`: its count, None without a valid decision): idle instances above it go once idle SCALEDOWN_IDLE."""
    warm = 1 if prewarm <= 0 and last_end and now - last_end < keepalive else 0
    out: list[tuple[int, bool]] = []
    for i in sorted(range(len(idle)), key=lambda i: idle[i][0]):
        if live - len(out) <= floor:
            break
        last_used, inflight = idle[i]
        if inflight:
            continue
        idle_for = now - last_used
        expired = (prewarm > 0 and not busy) or idle_for >= keepalive
        surplus = desired is not None and idle_for >= SCALEDOWN_IDLE and live - len(out) > max(desired, floor, warm)
        if expired or surplus:
            out.append((i, expired))
    return out
