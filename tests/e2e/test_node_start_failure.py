"""A node whose start fails halfway stops, in reverse, exactly the parts that had started (node.py's start list):
nothing is left running that no stop would reach — here the real zygote and the async queue's loops."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfn.config import Settings
from polyfn.lifecycle import Step
from polyfn.node import Node


async def test_a_start_that_fails_halfway_stops_what_started(tmp_path: Path) -> None:
    node = Node(Settings(data_dir=tmp_path / "data", port=0, storage_port=0))
    names = [step.name for step in node.lifecycle.steps]
    assert names.index("store") < names.index("instances") < names.index("async queue") < names.index("workflows")

    async def broken() -> None:
        assert node.manager.zygote.alive  # the parts before this step are running
        assert node.queue.file.task is not None and not node.queue.file.task.done()
        raise RuntimeError("workflows cannot start")

    at = names.index("workflows")
    node.lifecycle.steps[at] = Step("workflows", broken, None)
    with pytest.raises(RuntimeError, match="workflows cannot start"):
        await node.start()

    assert node.lifecycle.started == []
    assert node.manager.zygote.proc is None  # the zygote was stopped and reaped
    assert node.queue.file.task is not None and node.queue.file.task.done()  # the queue stopped claiming
    assert node.invoker.accepting is False  # the functions step drained
    await node.stop()  # the caller's stop after a failed start is harmless: nothing stops twice
