"""What the node reads about its processes from /proc: children, pid in its own namespace, memory.

Every reader returns an empty/zero/None answer for a process that is gone or unreadable: the processes
are instances and zygotes that may exit at any moment.
"""

from __future__ import annotations

import os


def children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's), from /proc."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        pass
    return out


def ns_pid(pid: int) -> int:
    """The pid of host process `pid` in its own (innermost) pid namespace; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kb(pid: int) -> int:
    """Resident set size of process `pid` in kB (VmRSS); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def smaps(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) in kB of process `pid`, from /proc/PID/smaps_rollup; None if it cannot be read."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return rss, pss
