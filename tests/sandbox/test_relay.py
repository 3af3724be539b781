"""`network: polyfn`'s relay: listeners made inside a fresh network namespace, accepted by the server side
outside it, spliced to the real port; everything else in the namespace stays unreachable."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from polyfn.sandbox import linux
from polyfn.sandbox.relay import NetRelay, expose

from .. import needs

CHILD_OK = 0


def _enter_netns() -> None:
    if os.geteuid() == 0:
        linux.unshare(linux.CLONE_NEWNET)
    else:  # a laptop: the namespace comes from an unprivileged user namespace
        from polyfn.sandbox.namespaces import map_self

        uid, gid = os.getuid(), os.getgid()
        linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNET)
        map_self(uid, gid)
    linux.loopback_up()


def _child(sock_path: str, port: int, other: int, report: int) -> None:
    """In a forked child: own netns, expose `port`, talk through it; `other` must stay unreachable."""
    try:
        _enter_netns()
        expose(sock_path, [port], os.getpid())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"ping")
            c.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := c.recv(100):
                got += chunk
        try:
            socket.create_connection(("127.0.0.1", other), timeout=2).close()
            other_result = b"connected"
        except OSError:
            other_result = b"refused"
        os.write(report, got + b"|" + other_result)
        os._exit(0)
    except BaseException as e:
        os.write(report, f"error {e!r}".encode())
        os._exit(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_relay_reaches_the_target_and_nothing_else(tmp_path: Path) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(b"pong:" + data)
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    real = target.sockets[0].getsockname()[1]
    bystander = await asyncio.start_server(echo, "127.0.0.1", 0)  # on the host: must stay unreachable
    other = bystander.sockets[0].getsockname()[1]
    inside = _free_port()
    relay = NetRelay(tmp_path / "relay.sock", {inside: ("127.0.0.1", real)})
    await relay.start()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(str(tmp_path / "relay.sock"), inside, other, w)
    os.close(w)
    try:
        loop = asyncio.get_running_loop()
        out = await asyncio.wait_for(loop.run_in_executor(None, os.read, r, 1000), 20)
        _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
        if out.startswith(b"error") and b"Operation not permitted" in out and os.geteuid() != 0:
            needs.missing(f"no unprivileged user namespaces here: {out.decode()}")
        assert out == b"pong:ping|refused", out
        assert status == 0
        assert relay.connections == 1
        assert relay.relayed_pids() == [pid]
        relay.release(pid)
        assert relay.relayed_pids() == []
    finally:
        os.close(r)
        await relay.stop()
        target.close()
        bystander.close()


class _Pong(asyncio.Protocol):
    """Answers `pong:` and what it read once the client is done sending (the node's HTTP protocol's stand-in)."""

    def __init__(self) -> None:
        self.got = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += data

    def eof_received(self) -> bool:
        self.transport.write(b"pong:" + self.got)  # type: ignore[attr-defined]
        self.transport.close()
        return False


async def test_relay_serves_the_nodes_own_port_with_its_protocol(tmp_path: Path) -> None:
    """A port registered with `serve` (the node's HTTP port): the instance's connections are served by that
    protocol in this process; the real port's server never sees them."""
    async def spliced(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.write(b"spliced")
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(spliced, "127.0.0.1", 0)
    real = target.sockets[0].getsockname()[1]
    bystander = await asyncio.start_server(spliced, "127.0.0.1", 0)
    other = bystander.sockets[0].getsockname()[1]
    inside = _free_port()
    relay = NetRelay(tmp_path / "relay.sock", {inside: ("127.0.0.1", real)})
    relay.serve(("127.0.0.1", real), _Pong)
    await relay.start()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(str(tmp_path / "relay.sock"), inside, other, w)
    os.close(w)
    try:
        loop = asyncio.get_running_loop()
        out = await asyncio.wait_for(loop.run_in_executor(None, os.read, r, 1000), 20)
        _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
        if out.startswith(b"error") and b"Operation not permitted" in out and os.geteuid() != 0:
            needs.missing(f"no unprivileged user namespaces here: {out.decode()}")
        assert out == b"pong:ping|refused", out
        assert status == 0
        assert relay.connections == 1
        relay.release(pid)
    finally:
        os.close(r)
        await relay.stop()
        target.close()
        bystander.close()


async def test_relay_refuses_ports_that_are_not_polyfns(tmp_path: Path) -> None:
    relay = NetRelay(tmp_path / "relay.sock", {_free_port(): ("127.0.0.1", 1)})
    await relay.start()
    try:
        loop = asyncio.get_running_loop()
        with pytest.raises(OSError, match="not one of polyfn's endpoints"):
            await loop.run_in_executor(None, expose, str(tmp_path / "relay.sock"), [_free_port()], os.getpid())
        assert relay.relayed_pids() == []
    finally:
        await relay.stop()


async def test_an_offer_is_answered_later_and_a_refusal_still_fails_the_start(tmp_path: Path) -> None:
    """A clean start sends its listeners (`offer`) and reads the relay's answer after its mounts
    (`sandbox.finish_network`): the answer is the same, a refusal still fails the start, and the connection is
    closed either way (never left open for user code)."""
    from polyfn.sandbox import SandboxError, SandboxPlan, finish_network
    from polyfn.sandbox.relay import offer

    relay = NetRelay(tmp_path / "relay.sock", {_free_port(): ("127.0.0.1", 1)})
    await relay.start()
    try:
        loop = asyncio.get_running_loop()
        offered = await loop.run_in_executor(None, offer, str(tmp_path / "relay.sock"), [_free_port()], os.getpid())
        assert offered.desc.startswith("relayed: 127.0.0.1:")
        pending = [offered]
        plan = SandboxPlan(memory_mb=128, network="polyfn")
        with pytest.raises(SandboxError, match="not one of polyfn's endpoints"):
            await loop.run_in_executor(None, finish_network, plan, pending)
        assert pending == [] and offered.ctl.fileno() == -1
        assert relay.relayed_pids() == []
    finally:
        await relay.stop()
