"""`network: polyfn`: an instance that may reach polyfn's own endpoints and nothing else.

The instance lives in its own network namespace with only a loopback interface (as for `network: none`).
Before any user code runs, polyfn's code *inside* that namespace makes listening sockets on
`127.0.0.1:<api port>` and `127.0.0.1:<storage port>` and hands them to the server over a Unix socket
(`SCM_RIGHTS`). A socket stays in the namespace it was made in, so the server, which lives in the host's
network, accepts connections made inside the instance's namespace on them and splices the bytes to its
real ports. Nothing else is reachable: there is no route out of the namespace, and the only sockets that
answer inside it are those listeners. No veth pair, no bridge, no nftables rule, no root needed for the
networking itself (it works inside an unprivileged user namespace too).

Child side: `expose()` (called by `sandbox.apply`, before the uid drop and the mounts that hide the relay
socket). Server side: `NetRelay`, one per node, started by the server.

The node's own HTTP port is not spliced: its listeners are served by the node's HTTP server itself (`serve`,
the protocol factory the server registers once it listens), so a request from an instance (a durable
function's checkpoint at every step, an SDK call to the API) is one connection into the node instead of two
and a copy of every byte both ways through the event loop. The other endpoints (the object store, a
function's allow-list) are spliced.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the instance side (`expose`) runs on the cold path: no asyncio import there
    import asyncio

LOOPBACK = "127.0.0.1"
MAX_PORTS = 40  # polyfn's endpoints and a function's allow-list entries


def endpoints(listening: list[tuple[str, int]]) -> tuple[dict[int, tuple[str, int]], dict[str, str]]:
    """What the relay serves for the node's endpoints `listening` (host, port; port 0: none): port → where it
    forwards to, and each endpoint's URL as the node announces it → the URL inside an instance's network."""
    targets: dict[int, tuple[str, int]] = {}
    urls: dict[str, str] = {}
    for host, port in listening:
        if not port:
            continue
        real = LOOPBACK if host in ("0.0.0.0", "::", "") else host
        targets[port] = (real, port)
        shown = f"[{real}]" if ":" in real else real
        urls[f"http://{shown}:{port}"] = f"http://{LOOPBACK}:{port}"
    return targets, urls


def expose(socket_path: str, ports: list[int], host_pid: int, dests: list[str] = ()) -> str:  # type: ignore[assignment]
    """In the instance's network namespace: listen on 127.0.0.1:`ports` and on each `dests` entry
    ("IP:PORT", the function's allow-list: the IP is made local to the namespace first), give the listeners
    to the server at `socket_path`, wait for its answer. Raises OSError when the server refuses or cannot be
    reached."""
    return offer(socket_path, ports, host_pid, dests).answer()


class Offered:
    """Listeners handed to the server, its answer not read yet (`offer`): a clean start reads it after its
    mounts (`sandbox.apply`), so the server's round trip overlaps them instead of adding to them."""

    def __init__(self, ctl: socket.socket, desc: str):
        self.ctl = ctl
        self.desc = desc

    def answer(self) -> str:
        """The server's answer: the description of what is relayed, or OSError when it refused. Closes the
        connection (never left open for user code)."""
        try:
            answer = self.ctl.recv(512).decode(errors="replace")
        finally:
            self.ctl.close()
        if answer != "ok":
            raise OSError(f"the server's network relay refused the instance: {answer or 'no answer'}")
        return self.desc


def offer(socket_path: str, ports: list[int], host_pid: int, dests: list[str] = ()) -> Offered:  # type: ignore[assignment]
    """`expose` without waiting for the server's answer (`Offered.answer` reads it). The connection is made
    and the listeners sent here, before the mounts hide the relay's socket."""
    listeners: list[socket.socket] = []
    pairs = [(LOOPBACK, p) for p in ports] + [_split(d) for d in dests]
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        for host, port in pairs:
            if not host.startswith("127."):
                from polyfn.sandbox import veth

                veth.add_local_address(host)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(256)  # connections made before the server accepts wait in this backlog
        ctl.settimeout(10)
        ctl.connect(socket_path)
        body = json.dumps({"pid": host_pid, "ports": ports, "dests": [list(p) for p in pairs[len(ports):]]})
        fds = array.array("i", [s.fileno() for s in listeners])
        ctl.sendmsg([body.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    except BaseException:
        ctl.close()
        raise
    finally:
        for s in listeners:  # (the server holds its own: descriptors in flight keep them open)
            s.close()
    return Offered(ctl, "relayed: " + ", ".join(f"{h}:{p}" for h, p in pairs))


def _split(dest: str) -> tuple[str, int]:
    host, _, port = dest.rpartition(":")
    return host, int(port)


class NetRelay:
    """Server side: receives listeners from instances and relays their connections to `targets`
    ({port as seen inside the instance: (host, port) on the node})."""

    def __init__(self, path: Path, targets: dict[int, tuple[str, int]]):
        self.path = path
        self.targets = targets
        self._sock: socket.socket | None = None
        self._servers: dict[int, list[asyncio.AbstractServer]] = {}  # host pid → its relays
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        #: allow-list destinations (IP, port) of deployed functions: the only others an instance may relay
        self.allowed: set[tuple[str, int]] = set()
        #: upstream (host, port) → the protocol factory of the server listening there: its connections go
        #: straight to that protocol (the node's own HTTP server), not spliced to the port
        self.direct: dict[tuple[str, int], Callable[[], asyncio.Protocol]] = {}

    def serve(self, upstream: tuple[str, int], protocol: Callable[[], asyncio.Protocol]) -> None:
        """Serve the listeners relayed to `upstream` with `protocol` (from the next instance on)."""
        self.direct[upstream] = protocol

    async def start(self) -> None:
        import asyncio

        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)  # 0600: only the server's uid (and root) may hand in listeners
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        import asyncio

        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        asyncio.get_running_loop().add_reader(conn.fileno(), self._receive, conn)

    def _receive(self, conn: socket.socket) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        fds: list[int] = []
        try:
            msg, anc, _flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(MAX_PORTS * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            msg, anc = b"", []
        loop.remove_reader(conn.fileno())
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", data[: len(data) - len(data) % 4]))
        try:
            answer = self._register(conn, msg, fds)
        except Exception as e:  # anything an instance sends is untrusted: refuse, never crash
            answer = f"refused: {e}"
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # the relays hold their own duplicates
        with contextlib.suppress(OSError):
            conn.send(answer.encode())
        conn.close()

    def _register(self, conn: socket.socket, msg: bytes, fds: list[int]) -> str:
        import asyncio

        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid not in (0, os.geteuid()):
            return f"refused: uid {uid}"
        req = json.loads(msg)
        pid, ports = int(req["pid"]), [int(p) for p in req["ports"]]
        dests = [(str(h), int(p)) for h, p in req.get("dests", [])]
        if len(ports) + len(dests) != len(fds) or not fds or pid <= 0:
            return "refused: one listener per port"
        if pid in self._servers or not os.path.exists(f"/proc/{pid}"):
            return f"refused: pid {pid} is unknown or already relayed"
        wanted: list[tuple[tuple[str, int], tuple[str, int]]] = []  # (listener address, upstream)
        for port in ports:
            if port not in self.targets:
                return f"refused: port {port} is not one of polyfn's endpoints"
            wanted.append(((LOOPBACK, port), self.targets[port]))
        for dest in dests:
            if dest not in self.allowed:
                return f"refused: {dest[0]}:{dest[1]} is on no function's allow-list"
            wanted.append((dest, dest))
        socks = []
        for (addr, _), fd in zip(wanted, fds, strict=True):
            s = socket.socket(fileno=os.dup(fd))
            socks.append(s)
            if (s.family != socket.AF_INET or s.type != socket.SOCK_STREAM
                    or not s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    or s.getsockname() != addr):
                for x in socks:
                    x.close()
                return f"refused: the descriptor for {addr[0]}:{addr[1]} is not a listener on it"
        self._servers[pid] = []
        task = asyncio.get_running_loop().create_task(
            self._serve(pid, [(up, s) for (_, up), s in zip(wanted, socks, strict=True)]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "ok"

    async def _serve(self, pid: int, pairs: list[tuple[tuple[str, int], socket.socket]]) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for (host, real), s in pairs:
            s.setblocking(False)
            direct = self.direct.get((host, real))
            if direct is not None:
                def made(direct: Callable[[], asyncio.Protocol] = direct) -> asyncio.Protocol:
                    self.connections += 1
                    return direct()

                server = await loop.create_server(made, sock=s, backlog=256)
                if pid not in self._servers:  # released while starting
                    server.close()
                    return
                self._servers[pid].append(server)
                continue

            async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str = host,
                            real: int = real) -> None:
                await self._relay(reader, writer, host, real)

            server = await asyncio.start_server(relay, sock=s, backlog=256)
            if pid not in self._servers:  # released while starting
                server.close()
                return
            self._servers[pid].append(server)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
        import asyncio

        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()
            except (OSError, RuntimeError):
                pass

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    def relayed_pids(self) -> list[int]:
        return sorted(self._servers)

    def release(self, pid: int) -> None:
        """The instance `pid` is gone: close its listeners (they keep its network namespace alive)."""
        for server in self._servers.pop(pid, []):
            server.close()

    async def stop(self) -> None:
        import asyncio

        for pid in list(self._servers):
            self.release(pid)
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
