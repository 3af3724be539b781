"""Fixtures for the attack suite: one real `polyfn serve` with every sandbox layer the host allows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .. import needs
from ..e2e.conftest import Server, start_server

CANARY = "polyfn-canary-7f3a9"  # in the server's environment: must never reach a function


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # a node of its own interpreter (not forked from the fork server: tests/e2e/nodefork.py), so that what an attack
    # may look at (/proc/PID/environ holding the canary, cmdline, hash seed) is what a real `polyfn serve` has
    s = start_server(tmp_path_factory.mktemp("polyfn-sec"), env={"POLYFN_TEST_CANARY": CANARY}, fork=False)
    s.deploy("bystander", {"handler.py": "def handler(event, context):\n    return 'still here'\n"})
    yield s
    s.stop()


def isolation(s: Server) -> str:
    """The `instance isolation: …` line the server logged at start."""
    for line in s.log.read_text().splitlines():
        if "instance isolation:" in line:
            return line
    return ""


# the words of the server's isolation line → the layer as the kernel knows it (tests/needs.py)
KERNEL = {"mount ns": "mount", "pid ns": "pid", "net ns": "net", "seccomp": "seccomp", "cgroup": "cgroup",
          "pids": "pids", "per-function uid": "uid", "own root fs": "mount"}  # (pivot_root needs a mount ns)


def require(s: Server, layer: str) -> None:
    """Skip when the kernel cannot provide `layer` (asked of the kernel, not of polyfn; a failure under
    CI=true); where it can, polyfn must be using it: a layer polyfn dropped fails the test."""
    why = needs.kernel_lacks(KERNEL[layer])
    if why:
        needs.missing(f"sandbox layer {layer!r} unavailable here: {why}")
    text = isolation(s).split("; off:")[0]
    assert layer in text, f"the kernel provides {layer!r} here, but polyfn runs without it: {isolation(s)}"
