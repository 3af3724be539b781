"""`linux.collapse_heap`: the server's heap on 2 MB pages (docs/performance.md, "cold10"), in a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from polyfn.sandbox.linux import HUGE_PAGE, heap_stretches

MAPS = """\
55d0a0000000-55d0a0001000 r--p 00000000 08:01 1234 /usr/bin/python3.11
55d0a1000000-55d0a1600000 rw-p 00000000 00:00 0 [heap]
7f0000100000-7f0000500000 rw-p 00000000 00:00 0
7f0000500000-7f0000600000 ---p 00000000 00:00 0
7f0000600000-7f0000a00000 rw-p 00000000 08:01 99 /tmp/mapped-file
7f0000a00000-7f0000e00000 rw-s 00000000 00:05 7 /dev/zero (deleted)
7ffc00000000-7ffc00400000 rw-p 00000000 00:00 0 [stack]
"""


def test_heap_stretches_are_the_aligned_2mb_stretches_of_private_anonymous_rw_memory() -> None:
    got = heap_stretches(MAPS)
    assert got == [
        (0x55D0A1000000, 0x55D0A1200000), (0x55D0A1200000, 0x55D0A1400000),  # [heap]: its three stretches
        (0x55D0A1400000, 0x55D0A1600000),
        (0x7F0000200000, 0x7F0000400000),  # the anonymous mapping: only the stretch wholly inside it
    ]  # never a file's pages (private or shared), a guard, nor the stack
    assert all(b - a == HUGE_PAGE and a % HUGE_PAGE == 0 for a, b in got)


CHILD = """
import json, threading
from polyfn.sandbox.linux import collapse_heap
junk = [dict(a=i, b=str(i)) for i in range(400_000)]  # ~100 MB of Python objects: whole arenas in memory
stop = threading.Event()
t = threading.Thread(target=stop.wait)  # a thread's stack: mostly untouched, it must be left as it is
t.start()
def kb(what):
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith(what + ":"):
            return int(line.split()[1])
before = kb("Rss")
n = collapse_heap()
print(json.dumps({"collapsed": n, "rss_before": before, "rss_after": kb("Rss"), "huge": kb("AnonHugePages")}))
stop.set()
"""


def test_collapse_heap_puts_the_resident_heap_on_huge_pages_without_filling_sparse_memory() -> None:
    out = json.loads(subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True,
                                    timeout=120).stdout)
    if not out["collapsed"]:
        pytest.skip(f"no MADV_COLLAPSE here (Linux < 6.1, or no free 2 MB pages): {out}")
    assert out["collapsed"] >= 16 * HUGE_PAGE  # most of the ~100 MB heap
    assert out["huge"] * 1024 >= out["collapsed"]  # what it says it did, the kernel shows
    # only stretches already (nearly) all in memory: at most 10 % of them filled, not the thread's 8 MB stack
    assert out["rss_after"] - out["rss_before"] <= out["collapsed"] // 1024 // 10 + 1024
