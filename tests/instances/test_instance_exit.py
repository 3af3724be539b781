"""An instance's exit report can reach the server before its last frames: those frames must not be lost."""

from __future__ import annotations

import socket

import pytest

from polyfn.instances.exits import ended
from polyfn.instances.instance import InitFailed, Instance
from polyfn.instances.manager import InstanceManager
from polyfn.protocol import InitError, encode


async def test_exit_reported_before_the_init_error_is_read_keeps_the_init_error() -> None:
    ours, theirs = socket.socketpair()
    inst = Instance("i-1", "f:1", on_lost=lambda _: None)
    await inst.attach(ours)
    # The instance sends its typed init error and exits; the zygote's exit report is handled first.
    theirs.sendall(encode(InitError({"errorType": "Runtime.ImportModuleError", "errorMessage": "no module",
                                     "stackTrace": []})))
    theirs.close()
    ended(inst, 1 << 8, False)
    with pytest.raises(InitFailed) as info:
        await inst.wait_ready(5)
    assert info.value.error["errorType"] == "Runtime.ImportModuleError"
    assert inst.exit_status == 1 << 8


async def test_a_stop_does_not_wait_for_an_instance_whose_exit_was_never_reported(tmp_path) -> None:
    """An instance already gone whose exit report never came (seen in the cluster bench: its function zygote
    did not report it) used to hold every node stop for the whole 5 s timeout."""
    import asyncio
    import subprocess

    from polyfn.config import Settings

    gone = subprocess.Popen(["true"])
    gone.wait()
    manager = InstanceManager(Settings(data_dir=tmp_path))
    inst = Instance("i-2", "f:1", on_lost=lambda _: None)
    inst.kill("already gone")
    manager.exits.by_pid[gone.pid] = inst
    # it would wait all of its 600 s for the process (the report never comes); it must see the pid is gone
    await asyncio.wait_for(manager.stop(timeout=600), 60)
