"""Keep-alive policies: how long an idle instance is kept, and when to pre-warm one.

Pure logic with the clock passed in (`now`, seconds): the same code runs in the live node (the pool calls
it) and in the trace simulator (`bench/keepalive.py`). Nothing here reads a clock or does I/O.

* `FixedPolicy` — keep an instance for a fixed time after its last use (the default, 10 minutes).
* `HybridPolicy` — the histogram policy of "Serverless in the Wild" (Shahrad et al., USENIX ATC 2020):
  per function, a histogram of idle times (time between the end of one invocation and the start of the
  next) in 1-minute bins over a 4-hour range. When the histogram is representative, the instance is
  unloaded right after use and pre-warmed at the head percentile (5th) of idle times minus a margin, then
  kept until the tail percentile (99th) plus a margin. While it is not representative (too few samples,
  or too many idle times beyond the range), the policy falls back to a fixed keep-alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Window:
    """What to do after an invocation ends at time `t`: no instance needed during [t, t + prewarm);
    keep (or bring back) one warm during [t + prewarm, t + prewarm + keepalive)."""

    prewarm: float
    keepalive: float


class FixedPolicy:
    name = "fixed"

    def __init__(self, keepalive: float = 600.0):
        self.keepalive = keepalive

    def observe_idle(self, idle: float) -> None:
        """Record one idle time (seconds between the end of an invocation and the start of the next)."""

    def window(self) -> Window:
        return Window(0.0, self.keepalive)


@dataclass
class HybridConfig:
    bin_seconds: float = 60.0
    range_bins: int = 240  # 4 hours of 1-minute bins
    head_percentile: float = 5.0
    tail_percentile: float = 99.0
    margin: float = 0.10  # widen the window by 10 % on both sides
    min_samples: int = 10  # fewer idle times than this: not representative
    max_out_of_range: float = 0.5  # more than half the idle times beyond the range: not representative
    cv_threshold: float = 2.0  # bin-count coefficient of variation below this: no clear pattern
    fallback_keepalive: float = 600.0
    # Longest keep-alive window. Without a cap, functions with widely spread idle times keep an
    # instance for hours; on the Azure trace a 30-minute cap is what makes hybrid use no more idle
    # memory than fixed 10 min while cutting cold starts by more than 40 % (bench/keepalive.py).
    max_window: float = 1800.0


@dataclass
class HybridPolicy:
    config: HybridConfig = field(default_factory=HybridConfig)
    name: str = "hybrid"

    def __post_init__(self) -> None:
        self.bins = [0] * self.config.range_bins
        self.samples = 0
        self.out_of_range = 0
        self._cached: Window | None = None

    def observe_idle(self, idle: float) -> None:
        b = int(max(idle, 0.0) // self.config.bin_seconds)
        self.samples += 1
        if b >= self.config.range_bins:
            self.out_of_range += 1
        else:
            self.bins[b] += 1
        self._cached = None

    def representative(self) -> bool:
        c = self.config
        in_range = self.samples - self.out_of_range
        if self.samples < c.min_samples or in_range == 0:
            return False
        if self.out_of_range / self.samples > c.max_out_of_range:
            return False
        n = len(self.bins)
        mean = in_range / n
        var = sum((x - mean) ** 2 for x in self.bins) / n
        return (var ** 0.5) / mean >= c.cv_threshold

    def _percentile_bin(self, pct: float) -> int:
        total = sum(self.bins)
        target = total * pct / 100.0
        acc = 0
        for i, count in enumerate(self.bins):
            acc += count
            if acc >= target and count:
                return i
        return len(self.bins) - 1

    def window(self) -> Window:
        if self._cached is not None:
            return self._cached
        c = self.config
        if not self.representative():
            w = Window(0.0, c.fallback_keepalive)
        else:
            head = self._percentile_bin(c.head_percentile) * c.bin_seconds
            tail = (self._percentile_bin(c.tail_percentile) + 1) * c.bin_seconds
            prewarm = head * (1 - c.margin)
            w = Window(prewarm, min(tail * (1 + c.margin) - prewarm, c.max_window))
        self._cached = w
        return w


def make_policy(name: str, keepalive: float) -> FixedPolicy | HybridPolicy:
    if name == "fixed":
        return FixedPolicy(keepalive)
    if name == "hybrid":
        return HybridPolicy(HybridConfig(fallback_keepalive=keepalive))
    raise ValueError(f"keep-alive policy {name!r} is unknown: use fixed or hybrid")
