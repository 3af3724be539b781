"""The function zygote: one revision's module imported once, inside the function's sandbox, then forked
for every further instance of that revision ("import cache": `import numpy` is paid once, not per cold start).

It is made like an instance (a pre-forked blank of the runtime zygote, `InstanceSpec.zygote = True`), so
everything that must hold before user code runs holds before its module is imported here: cgroup, mount
namespace with the code read-only, pid and network namespaces, rlimits, the function's uid,
no_new_privs and seccomp. Its children inherit all of it; they are therefore sandboxed per *function*
(one mount namespace with one private /tmp, one pid namespace, one cgroup whose limits the server raises
with the number of instances), not per instance — see docs/performance.md, "Per-function zygotes".

Protocol: the same as the runtime zygote's (`Spawn` + the instance's connection as an SCM_RIGHTS fd →
`Spawned(pid)` … `Exited(pid, status)`) on the control channel the zygote was started with. Pids are
those of the zygote's pid namespace; the server maps them to host pids itself, from /proc (it never
trusts a pid this process reports, since user code ran here). After import the zygote checks that a fork
of it is safe: a module that started threads or kept sockets/pipes open answers `ZygoteFailed(reason)`
and the server falls back to clean starts for the revision, saying why in the activations' init info.
"""

from __future__ import annotations

import copy
import gc
import os
import signal
import socket
import stat
import threading
import time
from typing import Any

import msgspec

from polyfn.protocol import Invoke, Ready, Result, encode, to_instance_decoder
from polyfn.protocol.zygote import (
    PACKET_MAX,
    Exited,
    Offered,
    Spawn,
    Spawned,
    SpawnFailed,
    Take,
    ToFunctionZygote,
    Took,
    ZygoteFailed,
    ZygoteReady,
)
from polyfn.runtimes.python import instance, startup
from polyfn.runtimes.python.capture import LogBuffer, capture_output
from polyfn.runtimes.python.flavors import FunctionMeta, HandlerError, load_adapter
from polyfn.runtimes.python.procs import exit_child, set_pdeathsig, wait_readable

_enc = msgspec.msgpack.Encoder()
_take_decoder = msgspec.msgpack.Decoder(Take)
OFFERED = ", offered"  # (in an offered child's info, which its `Offered` carries too)


def _fds() -> set[int]:
    try:
        return {int(x) for x in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


def unforkable(fds_before: set[int]) -> str:
    """Why a fork of this process would not be a faithful copy, or "" when it is safe.

    Python threads do not survive a fork (the child has only the forking thread, and locks they held stay
    locked); sockets, pipes and other non-file descriptors opened at import would be shared by every
    instance. Native threads of fork-aware libraries (OpenBLAS registers `pthread_atfork` handlers) are
    allowed."""
    n = threading.active_count()
    if n > 1:
        return f"the module started {n - 1} thread{'s' if n > 2 else ''} at import"
    kinds: set[str] = set()
    for fd in _fds() - fds_before:
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue  # the directory listing's own descriptor
        if stat.S_ISSOCK(mode):
            kinds.add("a socket")
        elif stat.S_ISFIFO(mode):
            kinds.add("a pipe")
        elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            kinds.add("a special file")
    if kinds:
        return "the module opened " + " and ".join(sorted(kinds)) + " at import"
    return ""


def main(spec: startup.InstanceSpec, ctrl: socket.socket, info: str, prepared: Any) -> None:
    """Entry point in the blank that became the zygote. Never returns normally: the caller `_exit`s."""
    t0 = time.perf_counter()
    init_buf = LogBuffer(spec.log_line_max, spec.log_lines_max)
    capture_output(init_buf)
    try:
        applied = startup.prepare_process(spec, prepared)
        startup.report_refusals(spec, None)
        before = _fds()
        handler = startup.load_handler(spec)
        meta = FunctionMeta(spec.function, spec.revision, spec.handler, spec.memory_mb, spec.timeout, spec.env)
        adapter = load_adapter(spec.flavor, handler, meta)
    except BaseException as e:  # the clean start that follows reports the typed init error to callers
        payload = e.payload() if isinstance(e, HandlerError) else {"errorMessage": f"{type(e).__name__}: {e}"}
        ctrl.send(_enc.encode(ZygoteFailed(f"init failed: {payload.get('errorMessage')}")))
        return
    reason = unforkable(before)
    if reason:
        ctrl.send(_enc.encode(ZygoteFailed(reason)))
        return
    import_ms = (time.perf_counter() - t0) * 1000
    init_buf.drain()  # import-time output belongs to the zygote, not to an instance's first activation
    gc.collect()
    gc.freeze()  # the imported heap stays shared copy-on-write with every instance
    if applied:
        info = info + "; sandbox: " + ", ".join(applied)
    info = f"fork from function zygote (module imported in {import_ms:.0f} ms); zygote: function; " + info
    serve(ctrl, adapter, info, import_ms, spec)


def serve(ctrl: socket.socket, adapter: Any, info: str, import_ms: float, spec: Any = None) -> None:
    """Answer spawn requests. Keep one pre-forked child *offered* to the server (`Offered`, with the server's
    end of the child's instance connection attached): the server gives it its identity by writing `Take` on
    that connection (as the offer comes, or when it starts it), so a cold start costs neither a fork nor a
    round trip through this process; `Took` asks for the next one. A `Spawn` (no offer left, e.g. in a burst) forks a child for the connection it brings."""
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    dec = msgspec.msgpack.Decoder(ToFunctionZygote)
    offered = 0  # pid of the child offered to the server and not yet taken

    def fork_child(then: Any, *args: Any) -> int:
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(rfd)
            os.close(wfd)
            ctrl.close()
            set_pdeathsig()  # die with the zygote
            exit_child(then, *args)
        return pid

    def offer() -> int:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = fork_child(_offered, theirs, ours, spec, adapter, info)
        except OSError:
            return 0
        finally:
            theirs.close()
        try:
            socket.send_fds(ctrl, [_enc.encode(Offered(pid, info + OFFERED))], [ours.fileno()])
        except OSError:
            pass  # the server is gone: the child's connection closes with ours, and it exits
        finally:
            ours.close()
        return pid

    can_offer = spec is not None
    if can_offer:  # (before Ready: a start waiting for this zygote takes the offer at once)
        offered = offer()
    ctrl.send(_enc.encode(ZygoteReady(os.getpid(), import_ms)))
    while True:
        readable = wait_readable(ctrl, rfd)
        if rfd in readable:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                # (reported even for the offered child: the server may have taken it before our `Took` came)
                ctrl.send(_enc.encode(Exited(pid, status)))
                if pid == offered:  # died unused (or taken and ended): offer another
                    offered = offer()
        if ctrl not in readable:
            continue
        msg, fds, _, _ = socket.recv_fds(ctrl, PACKET_MAX, 4)
        if not msg:
            return  # the server dropped this zygote: exit (our instances die with us, PDEATHSIG)
        try:
            req = dec.decode(msg)
        except msgspec.DecodeError:
            for fd in fds:
                os.close(fd)
            continue
        if isinstance(req, Took):
            for fd in fds:
                os.close(fd)
            if req.pid == offered and can_offer:
                offered = offer()
            continue
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            ctrl.send(_enc.encode(SpawnFailed(req.req, "spawn request without a connection")))
            continue
        try:
            pid = fork_child(_direct, msg, fds[0], adapter, info)
        except OSError as e:
            ctrl.send(_enc.encode(SpawnFailed(req.req, f"fork failed: {e}")))
            continue
        finally:
            os.close(fds[0])
        ctrl.send(_enc.encode(Spawned(req.req, pid)))


def _offered(conn: socket.socket, server_end: socket.socket, spec: Any, adapter: Any, info: str) -> None:
    """The offered child: everything but the instance's identity is ready before the server takes it (log
    capture, where seccomp refusals are reported, a rehearsal of the start and the first invocation); then it
    waits for `Take` on its connection."""
    server_end.close()
    startup.redirect_refusals(conn)
    init_buf = LogBuffer(spec.log_line_max, spec.log_lines_max)
    capture_output(init_buf)
    _rehearse(spec, adapter, info)
    _become(conn, spec, adapter, init_buf, info)


def _become(conn: socket.socket, spec: Any, adapter: Any, init_buf: LogBuffer, info: str) -> None:
    """Read `Take` (the server may have written the first `Invoke` right behind it), take the identity it
    gives, answer `Ready` and serve. One read takes whatever the connection holds: `Take`, and the `Invoke`
    when it came already, which the serve loop then finds in its buffer (no second read, no wait)."""
    data = conn.recv(65536)
    t0 = time.perf_counter()
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "little"):
        more = conn.recv(65536)
        if not more:
            return  # the server dropped the offer (or the zygote)
        data += more
    end = 4 + int.from_bytes(data[:4], "little")
    take = _take_decoder.decode(data[4:end])
    os.environ["POLYFN_INSTANCE_ID"] = take.instance_id
    os.environ["POLYFN_HOST_PID"] = str(take.host_pid)
    instance.serve(conn, adapter, spec, init_buf, Ready(0, (time.perf_counter() - t0) * 1000, info + OFFERED),
                   early=data[end:])


def _nothing(*_: Any) -> str:
    return ""


def _rehearse(spec: Any, adapter: Any, info: str) -> None:
    """While waiting: run the runtime's own side of a start and an HTTP invocation once, on dummy frames over
    a socketpair of its own — `_become` and the serve loop exactly as a start runs them, the flavor's
    request and response mapping included — with the function's handler replaced by a stand-in that does
    nothing (the function's code never runs here). The copy-on-write faults of that path's first run (the
    pages of the zygote's heap, allocator pools and stack it writes: ~140 of them, 4 µs each on this VM)
    are then paid before a caller waits for them. The environment it sets is overwritten by the real `Take`;
    the concurrent (asyncio) serve loop is not rehearsed, only its frames."""
    dummy = Invoke(0, "", "http", 0.0, "GET", "/", "", [("a", "b")], b"x")
    to_instance_decoder.decode(encode(dummy)[4:])
    encode(Result(0, 200, [("a", "b")], b"x", None, [], 0.0))
    if adapter.is_async or spec.concurrency > 1:
        _take_decoder.decode(_enc.encode(Take("", 0)))
        encode(Ready(0, 0.0, ""))
        return
    try:
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return
    try:
        stand_in = copy.copy(adapter)
        stand_in.handler = _nothing
        take = _enc.encode(Take("", 0))
        there.sendall(len(take).to_bytes(4, "little") + take + encode(dummy))
        there.shutdown(socket.SHUT_WR)  # the serve loop ends at this end of its input
        _become(here, spec, stand_in, LogBuffer(spec.log_line_max, spec.log_lines_max), info)
    except Exception:
        pass  # (a rehearsal: the real start runs the same path and reports what fails)
    finally:
        here.close()
        there.close()


def _direct(msg: bytes, fd: int, adapter: Any, info: str) -> None:
    _instance(msgspec.msgpack.decode(msg, type=Spawn), fd, adapter, info)


def _instance(req: Spawn, fd: int, adapter: Any, info: str) -> None:
    """In the forked child: the module is imported and the sandbox in force; only this instance's own
    environment, log capture and handshake are left."""
    t0 = time.perf_counter()
    spec = msgspec.convert(req.spec, startup.InstanceSpec)
    sock = socket.socket(fileno=fd)
    startup.redirect_refusals(sock)
    os.environ["POLYFN_INSTANCE_ID"] = spec.instance_id
    init_buf = LogBuffer(spec.log_line_max, spec.log_lines_max)
    capture_output(init_buf)

    def host_pid() -> None:
        # The server found our host pid from /proc and sent it before it read our Ready frame, so these
        # 8 bytes precede the first invocation on the stream.
        data = sock.recv(8, socket.MSG_WAITALL)
        os.environ["POLYFN_HOST_PID"] = str(int.from_bytes(data, "little") if len(data) == 8 else 0)

    instance.serve(sock, adapter, spec, init_buf, Ready(0, (time.perf_counter() - t0) * 1000, info), host_pid)
