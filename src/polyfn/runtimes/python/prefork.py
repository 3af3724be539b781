"""What a zygote does right before it forks, so that its children copy fewer of its pages (issue 24, density).

A forked child shares the zygote's memory copy-on-write: every page it writes to is copied, and an idle
instance's PSS is mostly such copies. Two sources of writes are the zygote's leftovers rather than the
child's own work, and the zygote can remove them:

* **Holes in pymalloc's pools.** The zygote's imports freed objects here and there; a new small object in
  the child goes to the first pool of its size with a free block, i.e. into a hole in a page shared with the
  zygote, which that write then copies: a few hundred scattered holes cost a page each. `fill_pools` takes
  every free block of the zygote's used pools once (with objects it keeps), so the child's objects go to
  fresh pools, packed. Measured: −0.28 MB per idle instance (docs/performance.md, "Density").
* **The type attribute cache** (4,096 entries, each holding a reference to an attribute name): every cache
  miss in the child drops the reference of the entry it replaces — a decref on some old name string from the
  zygote's imports, anywhere in its heap. `before_fork` empties the cache, so the child's misses replace
  `None` entries instead (−0.1 MB per instance; 0.04 ms per fork, off the cold path in pre-forked blanks).
"""

from __future__ import annotations

import os
import re
import sys

#: what `fill_pools` keeps alive (in the zygote only; a child never touches it)
_FILLERS: list[object] = []

_ROW = re.compile(rb"\s+\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$")


def _free_blocks() -> dict[int, int]:
    """{block size: free blocks in used pools} from `sys._debugmallocstats()` (its only interface; it
    writes to fd 2, so fd 2 is pointed at a pipe meanwhile; the report is ~3 kB, well under a pipe's size)."""
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return {}
    rfd, wfd = os.pipe()
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(wfd, 2)
        try:
            stats()
        finally:
            os.dup2(saved, 2)
        os.close(wfd)
        wfd = -1
        chunks = []
        while chunk := os.read(rfd, 65536):
            chunks.append(chunk)
    finally:
        os.close(saved)
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    out: dict[int, int] = {}
    for line in b"".join(chunks).splitlines():
        m = _ROW.match(line)
        if m:
            out[int(m[1])] = int(m[2])
    return out


def fill_pools() -> None:
    """Once, in the zygote, after its imports and right before its first fork (see the module doc). A bytes
    object of n bytes takes a block of n + 33 bytes rounded up to 16; blocks of 32 bytes get 2-digit ints.
    Afterwards the last pool of each size class is part-used: fresh pages the child fills densely."""
    try:
        free = _free_blocks()
    except OSError:
        return
    for size, count in free.items():
        if size >= 48:
            _FILLERS.extend(b"\1" * (size - 33) for _ in range(count))
        elif size == 32:
            _FILLERS.extend((1 << 40) + i for i in range(count))


def before_fork() -> None:
    """Right before each fork (see the module doc)."""
    sys._clear_type_cache()
