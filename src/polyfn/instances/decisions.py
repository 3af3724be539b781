"""The instance manager's decisions as pure functions, like the scheduler's autoscaler.py and keepalive.py:
which sandbox layers a node uses (applied by sandboxing.py), whether an instance fits the node's memory budget
and whose idle instances make room (applied by budget.py). State and configuration go in, a value comes out.
The pools' own decision (which idle instances to close) is scheduler/decisions.py. Table-tested in
tests/scheduler/test_decisions.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
