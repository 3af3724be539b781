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
    """One bucket per name (key id, function name, an app's sign-in address); at most `max_buckets` of them.

    Names can come from callers (an e-mail tried at sign-in), so a flood of new names must not reset anybody's
    limit: when the table is full, the buckets that have refilled (the same as a new one) are dropped; if that is
    not enough, those nearest to full go (dropping them gives back the least), down to half the table.
    """

    def __init__(self, max_buckets: int = 100_000) -> None:
        self.buckets: dict[str, TokenBucket] = {}
        self.max_buckets = max_buckets

    def check(self, name: str, rate: float, burst: float, now: float) -> int:
        """0 when allowed, else whole seconds to put in `Retry-After` (at least 1)."""
        if rate <= 0:
            return 0
        b = self.buckets.get(name)
        if b is None or b.rate != rate or b.burst != max(1.0, burst):
            if b is None and len(self.buckets) >= self.max_buckets:
                self._prune(now)
            old, b = b, TokenBucket(rate, burst, now)
            if old is not None:  # a changed rate keeps what was saved up (at most the new burst): no free refill
                b.tokens = min(b.burst, old.tokens + max(0.0, now - old.stamp) * old.rate)
            self.buckets[name] = b
        wait = b.take(now)
        return 0 if wait == 0 else max(1, math.ceil(wait))

    def _prune(self, now: float) -> None:
        to_full = {n: (b.burst - b.tokens) / b.rate - (now - b.stamp) for n, b in self.buckets.items()}
        live = [n for n, t in to_full.items() if t > 0]
        if len(live) > self.max_buckets // 2:
            live = sorted(live, key=to_full.__getitem__)[len(live) - self.max_buckets // 2:]
        self.buckets = {n: self.buckets[n] for n in live}
