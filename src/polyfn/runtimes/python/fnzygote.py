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

import gc
import os
import signal
import socket
import stat
import threading
import time
from typing import Any

import msgspec

from polyfn.protocol import Ready
from polyfn.protocol.zygote import PACKET_MAX, Exited, Spawn, Spawned, SpawnFailed, ZygoteFailed, ZygoteReady
from polyfn.runtimes.python import instance, startup
from polyfn.runtimes.python.capture import LogBuffer, capture_output
from polyfn.runtimes.python.flavors import FunctionMeta, HandlerError, load_adapter
from polyfn.runtimes.python.procs import exit_child, set_pdeathsig, wait_readable

_enc = msgspec.msgpack.Encoder()


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
    serve(ctrl, adapter, info, import_ms)


def serve(ctrl: socket.socket, adapter: Any, info: str, import_ms: float) -> None:
    """Answer spawn requests. Like the runtime zygote, keep one pre-forked child waiting, so the fork and
    the child's first copy-on-write faults are paid off the cold-start path; a spawn hands it the request."""
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    dec = msgspec.msgpack.Decoder(Spawn)
    blank: tuple[int, socket.socket] | None = None

    def fork_child(then: Any, *args: Any) -> int:
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(rfd)
            os.close(wfd)
            ctrl.close()
            if blank is not None:
                blank[1].close()
            set_pdeathsig()  # die with the zygote
            exit_child(then, *args)
        return pid

    def fork_blank() -> tuple[int, socket.socket] | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = fork_child(_blank, theirs, ours, adapter, info)
        except OSError:
            ours.close()
            theirs.close()
            return None
        theirs.close()
        return pid, ours

    ctrl.send(_enc.encode(ZygoteReady(os.getpid(), import_ms)))
    blank = fork_blank()
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
                if blank is not None and pid == blank[0]:  # the waiting child died unused: replace it
                    blank[1].close()
                    blank = None
                    continue
                ctrl.send(_enc.encode(Exited(pid, status)))
        if ctrl not in readable:
            if blank is None:
                blank = fork_blank()
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
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            ctrl.send(_enc.encode(SpawnFailed(req.req, "spawn request without a connection")))
            continue
        pid = 0
        if blank is not None:
            pid, conn = blank
            blank = None
            try:
                socket.send_fds(conn, [msg], [fds[0]])
            except OSError:
                pid = 0
            conn.close()
        if not pid:
            try:
                pid = fork_child(_direct, msg, fds[0], adapter, info)
            except OSError as e:
                os.close(fds[0])
                ctrl.send(_enc.encode(SpawnFailed(req.req, f"fork failed: {e}")))
                continue
        os.close(fds[0])
        ctrl.send(_enc.encode(Spawned(req.req, pid)))
        blank = fork_blank()


def _blank(conn: socket.socket, parent_end: socket.socket, adapter: Any, info: str) -> None:
    parent_end.close()
    msg, fds, _, _ = socket.recv_fds(conn, PACKET_MAX, 2)
    conn.close()
    if msg and len(fds) == 1:
        _direct(msg, fds[0], adapter, info + ", pre-forked")


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
