"""Token buckets: `rate` tokens per second, at most `burst` saved up. Pure: the caller passes `now`."""

from __future__ import annotations

import math


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Limiter:
    """One bucket per name (key id, function name); buckets idle long enough to be full are dropped."""

    def __init__(self) -> None:
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, name: str, rate: float, burst: float, now: float) -> int:
        """0 when allowed, else whole seconds to put in `Retry-After` (at least 1)."""
        if rate <= 0:
            return 0
        b = self.buckets.get(name)
        if b is None or b.rate != rate or b.burst != max(1.0, burst):
            if len(self.buckets) > 100_000:
                self.buckets.clear()
            b = self.buckets[name] = TokenBucket(rate, burst, now)
        wait = b.take(now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
