"""An instance's exit report can reach the server before its last frames: those frames must not be lost."""

from __future__ import annotations

import socket

import pytest

from polyfn.protocol import InitError, encode
from polyfn.scheduler.instance import InitFailed, Instance
from polyfn.scheduler.manager import InstanceManager


async def test_exit_reported_before_the_init_error_is_read_keeps_the_init_error() -> None:
    ours, theirs = socket.socketpair()
    inst = Instance("i-1", "f:1", on_lost=lambda _: None)
    await inst.attach(ours)
    # The instance sends its typed init error and exits; the zygote's exit report is handled first.
    theirs.sendall(encode(InitError({"errorType": "Runtime.ImportModuleError", "errorMessage": "no module",
                                     "stackTrace": []})))
    theirs.close()
    InstanceManager._ended(inst, 1 << 8, False)
    with pytest.raises(InitFailed) as info:
        await inst.wait_ready(5)
    assert info.value.error["errorType"] == "Runtime.ImportModuleError"
    assert inst.exit_status == 1 << 8
