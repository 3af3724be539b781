"""Children forked from a zygote that imported numpy draw different numbers from numpy's global generator
(Python's `random` reseeds itself at fork; numpy's does not, so instances forked from a function or package
zygote would otherwise repeat each other's "random" ids)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("numpy")

CHILDREN = """
import os, sys
import numpy
from polyfn.runtimes.python.procs import reseed_after_fork
if sys.argv[1] == "reseed":
    os.register_at_fork(after_in_child=reseed_after_fork)
numpy.random.random()  # the generator used at import (numpy 2 seeds it at its first use), as a module may
draws = []
for _ in range(3):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, str(numpy.random.randint(0, 2**62)).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    draws.append(os.read(r, 64).decode())
    os.close(r)
print(" ".join(draws))
"""


def _draws(mode: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CHILDREN, mode], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_forked_children_draw_their_own_numbers() -> None:
    assert len(set(_draws("reseed"))) == 3


def test_without_the_hook_they_would_repeat_each_other() -> None:
    """The case the hook exists for (so the test above can fail): numpy's state is copied by fork."""
    assert len(set(_draws("plain"))) == 1
