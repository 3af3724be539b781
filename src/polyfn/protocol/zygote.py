"""The zygote channel: messages between the server and a zygote (the Python runtime's, or a function's).

A `SOCK_SEQPACKET` socket; each packet is one msgpack message of at most `PACKET_MAX` bytes. Server → zygote:
`Spawn` (with the instance's connection attached as an `SCM_RIGHTS` file descriptor). Zygote → server:
`FromZygote`. A function zygote also offers a pre-forked instance with its connection made (`Offered`, the
server's end attached): the server gives it its identity with `Take` on that connection — as the offer comes
(the child answers `Ready` and waits for its first `Invoke`), or at its start with the first `Invoke` right
behind it (no wait for its `Ready`) — without a round trip through the zygote; it says to the zygote when it
took one (`Took`) so it forks the next one. Both sides import these types from here: the server (instances/zygote.py,
instances/fnzygote.py) and the zygotes (runtimes/python/zygote.py, runtimes/python/fnzygote.py).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Spawn(msgspec.Struct, tag="spawn", array_like=True):
    req: int
    spec: Any  # InstanceSpec, array-encoded


class Took(msgspec.Struct, tag="took", array_like=True):
    """The server took the offered child `pid` (function zygotes only): offer another."""

    pid: int


ToFunctionZygote = Spawn | Took


class PackageZygote(msgspec.Struct, tag="pkgzygote", array_like=True):
    """Server → the runtime zygote: fork a *package zygote* that imports `modules` from the dependency layer
    at `path` (with its control channel attached, like a `Spawn`'s connection), answered by `Spawned(req, pid)`.
    The package zygote then speaks this protocol itself (`ZygoteReady` or `ZygoteFailed`, then `Spawn`s)."""

    req: int
    path: str
    modules: list[str]  # the layer's top-level packages: each must import
    also: list[str] = []  # their submodules the deploying function's code imports (tried; a failure is skipped)


ToRuntimeZygote = Spawn | PackageZygote


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


class Offered(msgspec.Struct, tag="offered", array_like=True):
    """A function zygote's pre-forked child `pid` (in its namespace) waits on the attached connection; `info`
    is what its `Ready` will say (the server records it before that frame comes: `Take` is pipelined)."""

    pid: int
    info: str = ""


class Take(msgspec.Struct, array_like=True):
    """Server → an offered child, on its connection (4-byte length, then this): become instance
    `instance_id`, known to the node as `host_pid`."""

    instance_id: str
    host_pid: int


FromZygote = ZygoteReady | Spawned | SpawnFailed | Exited | ZygoteFailed | Offered
PACKET_MAX = 1 << 20
