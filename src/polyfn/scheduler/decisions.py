"""The instance manager's and the pools' decisions as pure functions, like autoscaler.py and keepalive.py:
which sandbox layers a node uses, whether an instance fits the node's memory budget (and whose idle instances
make room), which idle instances a pool closes. State, configuration and `now` go in, a value comes out; the
manager (manager.py) and the pool (pool.py) apply it. Table-tested in tests/scheduler/test_decisions.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

#: the namespace-based layers in the order they are decided (and named in the isolation line)
LAYERS = ("mount", "root", "pid", "net", "uid", "seccomp")
#: what the isolation line calls each layer that is on
NAMES = {"mount": "mount ns", "root": "own root fs", "pid": "pid ns", "net": "net ns", "uid": "per-function uid",
         "seccomp": "seccomp"}


@dataclass
class Isolation:
    """The layers a node applies to its instances. `namespaces`: the namespaces each instance enters (with
    `user` when the node is not root); `net`: instances get a network namespace (made per instance in a user
    namespace); `parts`/`skipped`: the isolation line's words for the layers that are on, and for those that are
    off and why."""

    layers: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    net: bool = False
    parts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def decide_isolation(probe: Mapping[str, str], off: Iterable[str], root: bool) -> Isolation:
    """The layers to use from the host `probe` (layer → why it cannot be used, "" when it can; `userns`: why
    an unprivileged user namespace cannot be made), the layers configuration turns `off`, and whether the node
    runs as `root` (without root, a user namespace carries the others)."""
    off = set(off)
    out = Isolation()
    userns = not root and not probe.get("userns") and "mount" not in off
    if userns:
        out.namespaces.add("user")
    for layer in LAYERS:
        why = probe.get(layer, "not probed")
        if layer in off:
            out.skipped.append(f"{layer} (disabled by configuration)")
            continue
        if layer in ("pid", "uid", "root") and "mount" not in out.namespaces:
            out.skipped.append(f"{layer} (needs the mount namespace)")
            continue
        if why:
            out.skipped.append(f"{layer} ({why})")
            continue
        out.layers.add(layer)
        if layer in ("mount", "pid"):
            out.namespaces.add(layer)
        elif layer == "net":
            out.net = True
            if not userns:  # in a user namespace it is made per instance (the host network cannot be rejoined)
                out.namespaces.add(layer)
        out.parts.append(NAMES[layer])
    return out


T = TypeVar("T")


@dataclass
class Room(Generic[T]):
    """`reserve`'s answer. `refused`: never (over the function's share, or more than the whole budget); else
    the instance may start once the `evict` instances are closed (least recently used first) and `short` more
    MB are found elsewhere (0: none needed)."""

    refused: bool = False
    evict: list[T] = field(default_factory=list)
    short: int = 0


def reserve(need: int, mine: int, reserved: int, budget: int, share: float,
            idle: Iterable[tuple[float, int, T]]) -> Room[T]:
    """Room for one more instance reserving `need` MB, of a function whose instances reserve `mine` MB, on a node
    whose instances reserve `reserved` MB of its `budget`. One function never reserves more than `share` % of
    the budget (unless it has nothing yet): a function scaling up, or crash-looping through memory, cannot take
    the node nor evict every other function's warm instances. `idle`: other functions' idle instances as
    (last used, MB, instance); the least recently used go first, as few as make room."""
    if mine and mine + need > budget * share / 100:
        return Room(refused=True)
    short = reserved + need - budget
    if short <= 0:
        return Room()
    if need > budget:
        return Room(refused=True)
    evict = []
    for _, mb, inst in sorted(idle, key=lambda x: x[0]):
        if short <= 0:
            break
        evict.append(inst)
        short -= mb
    return Room(False, evict, max(short, 0))


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
