"""Each function's CPU weight, in proportion to its memory (as Lambda gives CPU by memory), shared by all of
the function's cgroups however many instances it runs.

Every instance (or function zygote, with the instances it forks) runs in a cgroup of its own, joined before
the instance knew its function (`sandbox/cgroups.py`: moving a process between cgroups costs an RCU grace
period, so blanks join theirs ahead of time). A weight per cgroup made a function's CPU grow with its
instances: four looping callers of a spinning function got four times the weight of a quiet neighbour, and
its p99 rose 23×. Here a function's weight (its memory in `cpu.shares` units: 256 for 256 MB) is split
evenly over the cgroups it has, and re-split whenever one comes or goes: under contention every function
gets CPU in proportion to its memory, whatever it does with processes and instances. Idle CPU is still used
by whoever wants it (weights, not quotas; `POLYFN_CPU_QUOTA` adds a hard cap per instance).

The caller writes the weights (`write(pid, shares)`) and passes in what changed; this keeps the books.
"""

from __future__ import annotations

from collections.abc import Callable

MIN_SHARES = 2  # the smallest cpu.shares the kernel takes


def function_shares(memory_mb: int) -> int:
    """A function's whole CPU weight: its memory in MB (the scale the per-instance weight always had)."""
    return max(MIN_SHARES, memory_mb)


class CpuShares:
    def __init__(self, write: Callable[[int, int], None]):
        self._write = write
        self._members: dict[str, set[int]] = {}  # function → pids whose cgroups it runs in
        self._memory: dict[str, int] = {}  # function → memory (MB) of its newest member
        self._function: dict[int, str] = {}  # pid → function
        self._written: dict[int, int] = {}  # pid → shares last written

    def join(self, function: str, memory_mb: int, pid: int) -> None:
        """`pid`'s cgroup now runs `function` (a new instance, or a function zygote)."""
        if self._function.get(pid) == function and self._memory.get(function) == memory_mb:
            self._written.pop(pid, None)  # (its sandbox may have written its own weight since: write it again)
            self._rebalance(function)
            return
        self.leave(pid)
        self._members.setdefault(function, set()).add(pid)
        self._memory[function] = memory_mb
        self._function[pid] = function
        self._rebalance(function)

    def leave(self, pid: int) -> None:
        function = self._function.pop(pid, None)
        self._written.pop(pid, None)
        if function is None:
            return
        members = self._members.get(function)
        if members is not None:
            members.discard(pid)
            if not members:
                del self._members[function]
                self._memory.pop(function, None)
                return
        self._rebalance(function)

    def shares_of(self, pid: int) -> int:
        return self._written.get(pid, 0)

    def _rebalance(self, function: str) -> None:
        members = self._members.get(function)
        if not members:
            return
        each = max(MIN_SHARES, function_shares(self._memory[function]) // len(members))
        written = self._written
        for pid in members:
            if written.get(pid) != each:  # (a burst of 200 clean starts: not 200 × 200 writes; past a few
                self._write(pid, each)  # instances the share is the floor and stops changing)
                written[pid] = each
