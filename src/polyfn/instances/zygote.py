"""Server side of the zygote: start it, ask it to fork instances, hear about exits.

The zygote is restarted on demand if it dies; instances of a dead zygote die with it (PDEATHSIG) and their
connections close, which the pools see as crashes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from polyfn.loops import one_item
from polyfn.protocol.zygote import (
    PACKET_MAX,
    Exited,
    FromZygote,
    Offered,
    Spawn,
    Spawned,
    SpawnFailed,
    ZygoteFailed,
    ZygoteReady,
)

log = logging.getLogger("polyfn.zygote")

#: seconds a spawn request waits for room on a full control channel before the zygote counts as stuck
SEND_TIMEOUT = 10.0


class ZygoteError(Exception):
    pass


class ZygoteClient:
    """One zygote process per runtime. `spawn()` returns the pid of a freshly forked instance."""

    #: the Python zygote's blanks enter their root filesystem ahead (`POLYFN_SANDBOX_ROOT`'s "ahead", read when
    #: it starts): each spawn of a plan with its own root then carries a detached copy of the plan's binds
    #: (`_trees`), for that zygote and the package zygotes forked from it alike
    attach_trees = False

    def __init__(self, runtime: str, log_path: Path, on_exit: Callable[[int, int], None]):
        self.runtime = runtime
        self.log_path = log_path
        self.on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[ZygoteReady] | None = None
        self._ids = itertools.count(1)
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(FromZygote)
        self._lock = asyncio.Lock()
        self._room: asyncio.Future[None] | None = None  # the control channel has room again (see `_writable`)
        self.preload_ms = 0.0
        self.env: dict[str, str] = {}  # extra environment for the zygote (cgroup base, …)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env.update(self.env)
        env["POLYFN_ZYGOTE_FD"] = str(theirs.fileno())
        if env.get("POLYFN_SANDBOX_ROOT"):
            ZygoteClient.attach_trees = bool(json.loads(env["POLYFN_SANDBOX_ROOT"]).get("ahead"))
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "polyfn.runtimes.python.zygote"],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,
            )
        theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        try:
            ready = await asyncio.wait_for(self._ready, 30)
        except TimeoutError:
            self.stop()
            raise ZygoteError(f"the {self.runtime} zygote did not start within 30 s (see {self.log_path})") from None
        self.preload_ms = ready.preload_ms
        log.info("%s zygote pid %d ready (preload %.0f ms)", self.runtime, ready.pid, ready.preload_ms)

    def _on_readable(self) -> None:
        while self.sock is not None:
            try:
                data, fds = self._recv()
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if fds and not data:
                for fd in fds:
                    os.close(fd)
            if not data:
                self._lost()
                return
            try:
                msg = self._dec.decode(data)
            except msgspec.DecodeError:
                for fd in fds:
                    os.close(fd)
                log.error("bad message from the zygote; restarting it")
                self._lost()
                return
            if isinstance(msg, Offered):
                self._offered(msg.pid, fds, msg.info)
                continue
            for fd in fds:  # (only an offer brings one)
                os.close(fd)
            if isinstance(msg, Exited):
                with one_item(log, "%s zygote: the exit of pid %d", self.runtime, msg.pid):  # read on after it
                    self.on_exit(msg.pid, msg.status)
            elif isinstance(msg, Spawned):
                fut = self._pending.pop(msg.req, None)
                if fut and not fut.done():
                    fut.set_result(msg.pid)
            elif isinstance(msg, SpawnFailed):
                fut = self._pending.pop(msg.req, None)
                if fut and not fut.done():
                    fut.set_exception(ZygoteError(msg.message))
            elif isinstance(msg, ZygoteReady):
                if self._ready and not self._ready.done():
                    self._ready.set_result(msg)
            elif isinstance(msg, ZygoteFailed):  # a function zygote that cannot be used
                if self._ready and not self._ready.done():
                    self._ready.set_exception(ZygoteError(msg.reason))

    def _recv(self) -> tuple[bytes, list[int]]:
        return self.sock.recv(PACKET_MAX), []  # type: ignore[union-attr]

    def _offered(self, pid: int, fds: list[int], info: str) -> None:
        """A pre-forked child with its connection (function zygotes only: `FunctionZygote`)."""
        for fd in fds:
            os.close(fd)

    def _lost(self) -> None:
        """The zygote died or closed the channel: fail pending spawns; the next spawn restarts it."""
        if self.sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
                if self._room is not None and not self._room.done():
                    asyncio.get_running_loop().remove_writer(self.sock.fileno())
                    self._room.set_result(None)  # (its senders find the channel closed)
            except (RuntimeError, ValueError):
                pass
            self.sock.close()
            self.sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ZygoteError(f"the {self.runtime} zygote died"))
        self._pending.clear()
        if self._ready and not self._ready.done():
            self._ready.set_exception(ZygoteError(f"the {self.runtime} zygote exited during start (see {self.log_path})"))
        if self.proc is not None:
            try:
                self.proc.kill()
            except OSError:
                pass
            self.proc.wait()
            self.proc = None

    async def spawn(self, spec: msgspec.Struct, conn: socket.socket) -> int:
        """Fork an instance whose end of the connection is `conn` (sent over SCM_RIGHTS). Returns its pid."""
        trees = _trees(spec) if ZygoteClient.attach_trees else []
        try:
            return await self.request(lambda req: Spawn(req, spec), conn, trees)
        finally:
            for fd in trees:  # (the blank holds its own: once attached, a close unmounts nothing)
                os.close(fd)

    async def request(self, message: Callable[[int], msgspec.Struct], conn: socket.socket,
                      extra: list[int] = ()) -> int:  # type: ignore[assignment]
        """Send `message(req)` with `conn` (and `extra` descriptors) attached; the pid the zygote answers with
        (`Spawned`)."""
        if self.sock is None or not self.alive:
            async with self._lock:
                if self.sock is None or not self.alive:
                    if self.sock is not None:
                        self._lost()
                    await self.start()
        assert self.sock is not None
        req = next(self._ids)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[req] = fut
        payload = self._enc.encode(message(req))
        deadline = asyncio.get_running_loop().time() + SEND_TIMEOUT
        while True:
            sock = self.sock
            try:
                if sock is None:
                    raise OSError("the channel closed")
                socket.send_fds(sock, [payload], [conn.fileno(), *extra])
                break
            except BlockingIOError:
                # The control channel is full (a burst of spawns): wait until the zygote has read some. (Not a
                # 1 ms poll: 100 starts polling woke the loop ~26 times per spawn.)
                if not await self._writable(deadline):
                    self._pending.pop(req, None)
                    raise ZygoteError(f"the {self.runtime} zygote read no spawn request for "
                                      f"{SEND_TIMEOUT:.0f} s") from None
            except OSError as e:
                self._pending.pop(req, None)
                raise ZygoteError(f"cannot reach the {self.runtime} zygote: {e}") from e
        return await fut

    async def _writable(self, deadline: float) -> bool:
        """Wait until the control channel takes a message again (every sender waits on one future); False
        at `deadline`. True also when the channel closed meanwhile: the next send says so."""
        loop = asyncio.get_running_loop()
        room = self._room
        if room is None or room.done():
            assert self.sock is not None
            room = self._room = loop.create_future()
            fd = self.sock.fileno()

            def writable() -> None:
                loop.remove_writer(fd)
                if not room.done():
                    room.set_result(None)

            loop.add_writer(fd, writable)
        try:
            await asyncio.wait_for(asyncio.shield(room), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        self._lost()


def _trees(spec: msgspec.Struct) -> list[int]:
    """Detached copies (open_tree, recursive) of the binds of `spec`'s own root filesystem, in order, for a blank
    that entered that root ahead (sandbox/rootfs.py `enter_ahead`); a path that does not exist is dropped from
    the plan, as a blank would skip it. [] when the plan has no root of its own; on any other failure too (the
    blank then fails the start: never a function without its files)."""
    plan = getattr(spec, "sandbox", None)
    if plan is None or not getattr(plan, "root", None):
        return []
    from polyfn.sandbox import linux

    trees: list[int] = []
    kept: list[str] = []
    try:
        for path in plan.binds:
            try:
                trees.append(linux.open_tree(linux.AT_FDCWD, path, linux.OPEN_TREE_CLONE | linux.AT_RECURSIVE))
            except FileNotFoundError:
                continue
            kept.append(path)
    except OSError as e:
        for fd in trees:
            os.close(fd)
        log.error("cannot copy the paths of instance %s for its blank: %s", getattr(spec, "instance_id", "?"), e)
        return []
    plan.binds = kept
    return trees
