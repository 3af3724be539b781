"""A fork server for the tests' nodes and CLI calls: `polyfn serve` (and `Server.cli`'s `polyfn …`) in a process
forked from one that has already imported polyfn and its dependencies, so a node starts without paying for those
imports each time (the suite starts a few hundred nodes and runs the CLI hundreds of times; the imports were most of
a node's start).

A forked node runs what `python -m polyfn serve …` runs: runpy runs polyfn's `__main__` with the test's argv,
environment, working directory and log file, in a new session, and its interpreter exits as a fresh one does (atexit,
non-daemon threads joined, the exit status of `sys.exit` or of an uncaught exception). The fork server has started
no thread and no event loop when it forks. What differs from a fresh interpreter: /proc/PID/cmdline and the initial
/proc/PID/environ block are the fork server's (os.environ, and so every process the node starts, are the test's),
every forked node has the fork server's hash seed, and module-level state made at import is the fork server's
(polyfn's per-process random prefixes are re-drawn in a forked child: `os.register_at_fork` in src/polyfn/db).
Tests that look at those start their node with `start_server(…, fork=False)`; `POLYFN_TEST_FORK=0` turns the fork
server off for a run.

The client (`spawn`) gives a Popen-like handle: pid, poll, wait, send_signal, terminate, kill, returncode (the fork
server reaps the node and reports how it ended; signals go through a pidfd, so they never reach a reused pid)."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# What the fork server imports before it forks: what `polyfn serve` imports up to its first request (the API and
# console are built in the background after /healthz answers). A name that no longer imports is skipped.
PRELOAD = ("polyfn.cli.main", "polyfn.cli.serve", "polyfn.server", "polyfn.api.app", "polyfn.console",
           "polyfn.api.compat.lambda_api", "polyfn.api.compat.openfaas", "polyfn.api.compat.openwhisk",
           "polyfn.api.compat.stepfunctions", "polyfn.api.sites", "polyfn.api.triggers", "polyfn.api.apps",
           "polyfn.api.scaling", "polyfn.api.workflows", "polyfn.api.storage", "polyfn.api.security",
           "polyfn.api.usage", "polyfn.console.workflows", "polyfn.gateway.http", "polyfn.wsapi.protocol",
           "polyfn.sandbox.relay", "polyfn.sandbox.egress", "polyfn.auth.nodekey", "alembic.config",
           "alembic.command", "typer.rich_utils", "rich.markdown", "uvloop", "uvicorn", "cryptography.fernet", "aiosqlite", "encodings.idna")


def enabled() -> bool:
    return os.environ.get("POLYFN_TEST_FORK", "1") != "0"


# -- the client, in the test process ----------------------------------------------------------------------------

class ForkedProcess:
    """A node forked by the fork server, handled like the subprocess.Popen of `python -m polyfn serve …`."""

    def __init__(self, args: list[str], pid: int, conn: socket.socket):
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)
        self._done = threading.Event()
        threading.Thread(target=self._watch, args=(conn,), daemon=True, name=f"nodefork-{pid}").start()

    def _watch(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            line = f.readline()
        if line:
            self.returncode = json.loads(line)["exit"]
        else:  # the fork server is gone (it reaps its children: nobody will say how this one ended)
            with contextlib.suppress(OSError):
                import select

                select.select([self._pidfd], [], [])  # readable once the process has ended
            self.returncode = -signal.SIGKILL
        with contextlib.suppress(OSError):
            os.close(self._pidfd)
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, OSError):  # (OSError: the pidfd is closed: it has ended)
            signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_server: subprocess.Popen[bytes] | None = None
_path = ""
_lock = threading.Lock()


def _start() -> str:
    """The fork server's socket (started at the first call, stopped when this process exits)."""
    global _server, _path
    with _lock:
        if _server is not None and _server.poll() is None:
            return _path
        d = tempfile.mkdtemp(prefix="polyfn-nodefork-")
        _path = os.path.join(d, "s")
        with open(os.path.join(d, "log"), "wb") as log:  # the fork server's own output, if any
            _server = subprocess.Popen([sys.executable, __file__, _path], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        assert _server.stdout is not None
        ready = _server.stdout.readline()  # after the imports
        if ready.strip() != b"ready":
            _server.kill()
            raise RuntimeError(f"the node fork server did not start: {Path(d, 'log').read_text()}")
        atexit.register(_stop, _server, d)
        return _path


def _stop(server: subprocess.Popen[bytes], d: str) -> None:
    if server.stdin is not None:
        with contextlib.suppress(OSError):
            server.stdin.close()  # end of input: it exits (the nodes it forked are not its to stop)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(5)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(d, "s"))


def _fork(req: dict, fds: list[int]) -> ForkedProcess:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(_start())
    socket.send_fds(conn, [b"F"], fds)  # the child's stdin, stdout and stderr, or none (then: the log file)
    conn.sendall(json.dumps(req).encode() + b"\n")
    with conn.makefile("rb") as f:
        reply = json.loads(f.readline() or b'{"error": "the fork server closed the connection"}')
    if "pid" not in reply:
        conn.close()
        raise RuntimeError(f"the node fork server could not fork: {reply}")
    return ForkedProcess([sys.executable, "-m", "polyfn", *req["args"]], reply["pid"], conn)


def spawn(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> ForkedProcess:
    """`python -m polyfn ARGS` in a new session, in `cwd`, with `env`, its output appended to `log`."""
    return _fork({"args": args, "env": env, "cwd": str(cwd), "log": str(log), "session": True}, [])


def run(args: list[str], env: dict[str, str], cwd: Path, input: str | None, timeout: float
        ) -> subprocess.CompletedProcess[str]:
    """What `subprocess.run([sys.executable, "-m", "polyfn", *args], capture_output=True, text=True, input=input,
    env=env, cwd=cwd, timeout=timeout)` returns (the text decoded and its newlines translated as it does it),
    from a forked child."""
    import locale

    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = _fork({"args": args, "env": env, "cwd": str(cwd), "session": False}, [in_r, out_w, err_w])
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    got: dict[int, bytes] = {}

    def drain(fd: int) -> None:
        chunks = []
        with open(fd, "rb", buffering=0, closefd=True) as f:
            while chunk := f.read(65536):
                chunks.append(chunk)
        got[fd] = b"".join(chunks)

    def feed() -> None:
        with open(in_w, "wb", closefd=True) as f, contextlib.suppress(BrokenPipeError):
            if input:
                f.write(input.encode(locale.getpreferredencoding(False)))

    threads = [threading.Thread(target=t, args=a, daemon=True) for t, a in
               ((drain, (out_r,)), (drain, (err_r,)), (feed, ()))]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    for t in threads:
        t.join()

    def text(data: bytes) -> str:
        return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")

    assert proc.returncode is not None
    return subprocess.CompletedProcess(proc.args, proc.returncode, text(got[out_r]), text(got[err_r]))


# -- the fork server --------------------------------------------------------------------------------------------

def _child(req: dict, stdio: list[int], sockets: list[socket.socket], fds: list[int]) -> None:
    """In the forked child: become `python -m polyfn ARGS` (never returns: SystemExit ends the interpreter)."""
    import runpy

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for sock in sockets:  # closed through their objects, which would otherwise close the fd again when collected
        sock.close()
    for fd in fds:
        os.close(fd)
    if req["session"]:
        os.setsid()
    os.chdir(req["cwd"])
    if not stdio:
        out = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        stdio = [os.open(os.devnull, os.O_RDONLY), out, os.dup(out)]
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in stdio:
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(req["env"])
    sys.argv = ["polyfn", *req["args"]]
    sys.path[0] = req["cwd"]  # as `python -m` has it
    runpy.run_module("polyfn", run_name="__main__", alter_sys=True)
    sys.exit(0)


def _prebuild_cli() -> None:
    """typer builds polyfn's click command tree (every command's parameters, read from its signature) at each call
    of the app, before it parses the arguments: about a third of a forked node's start. It is built here once, and
    each forked child uses its own copy (one call per process, as in a fresh interpreter; the tree depends on no
    environment: options read their POLYFN_* variables when they parse)."""
    import typer.main

    from polyfn.cli.main import app

    build = typer.main.get_command
    built = build(app)
    typer.main.get_command = lambda typer_app: built if typer_app is app else build(typer_app)  # type: ignore[assignment]


def _serve(path: str) -> None:
    import selectors

    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    _prebuild_cli()
    assert threading.active_count() == 1, threading.enumerate()  # forking with other threads is unsafe
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    sel.register(0, selectors.EVENT_READ)  # stdin: its end means the test process is gone
    children: dict[int, socket.socket] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in sel.select(timeout=1.0):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                _, stdio, _, _ = socket.recv_fds(conn, 1, 3)
                with conn.makefile("rb") as f:
                    req = json.loads(f.readline())
                sys.stdout.flush()
                sys.stderr.flush()
                pid = -1
                try:
                    pid = os.fork()
                except OSError as e:
                    conn.sendall(json.dumps({"error": str(e)}).encode() + b"\n")
                    conn.close()
                    continue
                finally:
                    if pid != 0:  # the child's ends are the child's alone (else its output never ends)
                        for fd in stdio:
                            os.close(fd)
                if pid == 0:
                    sel.close()
                    _child(req, stdio, [listener, conn, *children.values()], [wake_r, wake_w])
                children[pid] = conn
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            elif key.fileobj == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            elif not os.read(0, 4096):
                os._exit(0)
        while children:  # reap whoever has ended, and say how
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                conn.close()


if __name__ == "__main__":
    sys.path[0] = os.getcwd()  # not this directory (tests/e2e): as `python -m` has it
    _serve(sys.argv[1])
