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
* `AdaptivePolicy` — the window that is worth its memory: over the idle times seen so far, the pre-warm
  time and keep-alive that avoid the most cold starts less the idle memory they cost (the function's MB ×
  minutes loaded, at a fixed exchange rate: `cold_start_worth` GB·min per cold start). A function with few
  idle times of its own starts from the node's `IdlePrior` (every function's idle times, each function
  weighing the same), weighted as a couple of samples. On the Azure trace: 57 % fewer cold starts than
  fixed 10 minutes at 5 % less idle memory (bench/keepalive.py, cross-validated).
"""

from __future__ import annotations

from collections import defaultdict
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


class IdlePrior:
    """The idle times of every function of a node, each function weighing the same (a function's histogram
    divided by its number of idle times): where a new function's idle times are likely to fall before it
    has many of its own. Bins as `AdaptivePolicy`'s; the last bin holds the idle times beyond the range."""

    def __init__(self, range_bins: int = 240, min_share: float = 0.004):
        self.range_bins = range_bins
        self.min_share = min_share  # bins holding less than this share are left out of `shares()`
        self.mass: defaultdict[int, float] = defaultdict(float)
        self.functions = 0
        self._shares: list[tuple[int, float]] | None = None

    def moved(self, bins: dict[int, int], n: int, new_bin: int) -> None:
        """One function's histogram `bins` (of `n` idle times) gets one more idle time in `new_bin`;
        called before the function adds it."""
        mass = self.mass
        if n == 0:
            self.functions += 1
        else:
            shrink = 1.0 / (n + 1) - 1.0 / n
            for b, c in bins.items():
                mass[b] += c * shrink
        mass[new_bin] += 1.0 / (n + 1)
        self._shares = None

    def shares(self) -> list[tuple[int, float]]:
        """(bin, share of a function's idle times) for the bins that hold at least `min_share`."""
        if self._shares is None:
            f = self.functions or 1
            self._shares = sorted((b, m / f) for b, m in self.mass.items() if m / f >= self.min_share)
        return self._shares


@dataclass
class AdaptiveConfig:
    bin_seconds: float = 60.0
    range_bins: int = 240  # idle times up to 4 hours are told apart; longer ones can only cost memory
    # The exchange rate between a cold start and idle memory: GB·min of a loaded idle instance worth one cold
    # start avoided. 70 makes the policy use no more idle memory than fixed 10 minutes on the Azure trace
    # (chosen on one half of its functions, checked on the other: bench/keepalive.py).
    cold_start_worth: float = 70.0
    prior_weight: float = 2.0  # the node's prior counts as this many idle times ...
    prior_until: int = 16  # ... until the function has this many of its own
    regrow: float = 1.1  # past `prior_until` idle times, the window is recomputed when they grew by 10 %


class AdaptivePolicy:
    """Choose (pre-warm at a, keep until b) in whole bins to maximise, over the idle times g seen so far,
    #(a <= g < b) − k · Σ loaded(g), where loaded(g) = g + ½ − a bins for a <= g < b (the call comes half-way
    through its bin on average), b − a for g >= b (the instance is kept for the whole window), 0 for g < a and k = memory / cold_start_worth: the cold starts a window
    avoids against the memory it holds. No window at all (value 0) unloads right after use."""

    name = "adaptive"

    def __init__(self, memory_mb: float, config: AdaptiveConfig | None = None, prior: IdlePrior | None = None,
                 fallback_keepalive: float = 600.0):
        self.config = c = config or AdaptiveConfig()
        self.fallback = Window(0.0, fallback_keepalive)  # no idle time seen here nor on the node: as `fixed`
        self.k = memory_mb / (c.cold_start_worth * 1024.0) * (c.bin_seconds / 60.0)
        self.prior = prior
        self.bins: dict[int, int] = {}  # bin → idle times; bin range_bins = beyond the range
        self.samples = 0
        self._window: Window | None = None
        self._at = -1

    def observe_idle(self, idle: float) -> None:
        c = self.config
        b = min(int(max(idle, 0.0) // c.bin_seconds), c.range_bins)
        if self.prior is not None:
            self.prior.moved(self.bins, self.samples, b)
        self.bins[b] = self.bins.get(b, 0) + 1
        self.samples += 1

    def window(self) -> Window:
        c = self.config
        n = self.samples
        if self._window is not None and (n == self._at or (c.prior_until <= n < self._at * c.regrow)):
            return self._window
        if n == 0 and (self.prior is None or not self.prior.functions):
            return self.fallback
        self._at = n
        weights: defaultdict[int, float] = defaultdict(float, self.bins)
        if self.prior is not None and n < c.prior_until:
            for b, share in self.prior.shares():
                weights[b] += c.prior_weight * share
        a, b = best_window(weights, c.range_bins, self.k)
        self._window = Window(a * c.bin_seconds, (b - a) * c.bin_seconds)
        return self._window


def best_window(weights: dict[int, float], range_bins: int, k: float) -> tuple[int, int]:
    """The (a, b) of `AdaptivePolicy`, bins; (0, 0) when no window is worth its memory. Candidate starts are
    0 and the occupied bins, candidate ends one past an occupied bin: O(occupied²)."""
    occupied = sorted((b, w) for b, w in weights.items() if b < range_bins and w > 0)
    total = sum(weights.values())
    best, best_a, best_b = 0.0, 0, 0
    below = 0.0  # weight of the idle times shorter than a
    i0 = 0
    for a in [0] + [b for b, _ in occupied if b > 0]:
        while i0 < len(occupied) and occupied[i0][0] < a:
            below += occupied[i0][1]
            i0 += 1
        covered = inside = 0.0  # idle times in [a, b); their loaded bins
        beyond = total - below  # idle times at or past b (those past the range included)
        for g, w in occupied[i0:]:
            b = g + 1
            covered += w
            inside += w * (g - a + 0.5)  # a call comes on average half-way through its bin
            beyond -= w
            value = covered - k * (inside + beyond * (b - a))
            if value > best:
                best, best_a, best_b = value, a, b
    return best_a, best_b


class ScaledPolicy:
    """A policy whose clock runs `scale` times real time: the idle times it is told are real seconds (× scale
    in its clock), the windows it gives are real seconds (÷ scale). The live node's way of injecting a clock
    (`keepalive_time_scale`): a replay of a day of trace minutes against a real node in a few real minutes,
    every policy deciding in trace time (bench/replay.py)."""

    def __init__(self, inner: FixedPolicy | HybridPolicy | AdaptivePolicy, scale: float):
        self.inner = inner
        self.scale = scale
        self.name = inner.name
        self._seen: Window | None = None
        self._scaled = Window(0.0, 0.0)

    def observe_idle(self, idle: float) -> None:
        self.inner.observe_idle(idle * self.scale)

    def window(self) -> Window:
        w = self.inner.window()
        if w is not self._seen:  # (policies return the same Window until it changes)
            self._seen, self._scaled = w, Window(w.prewarm / self.scale, w.keepalive / self.scale)
        return self._scaled


Policy = FixedPolicy | HybridPolicy | AdaptivePolicy | ScaledPolicy
NAMES = ("fixed", "hybrid", "adaptive")


def make_policy(name: str, keepalive: float, memory_mb: float = 128.0, prior: IdlePrior | None = None,
                time_scale: float = 1.0) -> Policy:
    """The policy called `name`; `keepalive` (its fixed window, or its fallback) is in the policy's clock,
    which runs `time_scale` times real time."""
    policy: FixedPolicy | HybridPolicy | AdaptivePolicy
    if name == "fixed":
        policy = FixedPolicy(keepalive)
    elif name == "hybrid":
        policy = HybridPolicy(HybridConfig(fallback_keepalive=keepalive))
    elif name == "adaptive":
        policy = AdaptivePolicy(memory_mb, prior=prior, fallback_keepalive=keepalive)
    else:
        raise ValueError(f"keep-alive policy {name!r} is unknown: use fixed, hybrid or adaptive")
    return policy if time_scale == 1.0 else ScaledPolicy(policy, time_scale)
