"""The zygote channel: messages between the server and a zygote (the Python runtime's, or a function's).

A `SOCK_SEQPACKET` socket; each packet is one msgpack message of at most `PACKET_MAX` bytes. Server → zygote:
`Spawn` (with the instance's connection attached as an `SCM_RIGHTS` file descriptor). Zygote → server:
`FromZygote`. Both sides import these types from here: the server (instances/zygote.py,
instances/fnzygote.py) and the zygotes (runtimes/python/zygote.py, runtimes/python/fnzygote.py).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Spawn(msgspec.Struct, tag="spawn", array_like=True):
    req: int
    spec: Any  # InstanceSpec, array-encoded


class ZygoteReady(msgspec.Struct, tag="zready", array_like=True):
    pid: int
    preload_ms: float


class Spawned(msgspec.Struct, tag="spawned", array_like=True):
    req: int
    pid: int


class SpawnFailed(msgspec.Struct, tag="spawn_failed", array_like=True):
    req: int
    message: str


class Exited(msgspec.Struct, tag="exited", array_like=True):
    pid: int
    status: int  # raw wait status


class ZygoteFailed(msgspec.Struct, tag="zfailed", array_like=True):
    """A function zygote could not be made (import error, or a module unsafe to fork): start clean."""

    reason: str


FromZygote = ZygoteReady | Spawned | SpawnFailed | Exited | ZygoteFailed
PACKET_MAX = 1 << 20
