"""Fixtures for the attack suite: one real `polyfn serve` with every sandbox layer the host allows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..e2e.conftest import Server, start_server

CANARY = "polyfn-canary-7f3a9"  # in the server's environment: must never reach a function


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-sec"), env={"POLYFN_TEST_CANARY": CANARY})
    s.deploy("bystander", {"handler.py": "def handler(event, context):\n    return 'still here'\n"})
    yield s
    s.stop()


def isolation(s: Server) -> str:
    """The `instance isolation: …` line the server logged at start."""
    for line in s.log.read_text().splitlines():
        if "instance isolation:" in line:
            return line
    return ""


def require(s: Server, layer: str) -> None:
    """Skip when this host cannot provide `layer` (not root, no namespaces …), saying why."""
    text = isolation(s).split("; off:")[0]
    if layer not in text:
        pytest.skip(f"sandbox layer {layer!r} unavailable here: {isolation(s)}")
