"""Start instances of runtimes that have no zygote (`node`, `http`) as fresh processes.

A launched instance gets what a forked Python instance gets: its end of the socketpair (inherited, its
number in `$POLYFN_FD`), the sandbox (cgroup + rlimits, applied between fork and exec by `_preexec`), death
with the server (PR_SET_PDEATHSIG) and its own session. Its exit status reaches the manager's `on_exit`
exactly as the zygote reports it for forked children: the launcher watches a pidfd on the event loop and
reaps the process itself (raw wait status, so `Instance.describe_exit` reads signals and codes alike).

`_preexec` runs in the child after fork, in a process that may have other threads: it only makes system
calls (os.mkdir/open/write, setrlimit, prctl through a pre-loaded libc), never Python-level locks.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polyfn.runtimes.python.instance import SAFE_ENV
from polyfn.sandbox.plan import SandboxPlan, cgroup_dir_for

log = logging.getLogger("polyfn.launcher")

NODE_DIR = Path(__file__).resolve().parents[1] / "runtimes" / "node"
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class LaunchError(OSError):
    pass


def _write(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _preexec(plan: SandboxPlan | None) -> Callable[[], None]:
    """The child's sandbox: join a cgroup named after its pid and set its limits, then rlimits."""
    nofile = plan.nofile if plan else 1024
    fsize = (plan.fsize_mb if plan else 512) * 1024 * 1024
    base = plan.cgroup_base if plan else ""
    version = plan.cgroup_version if plan else 0
    limit = str((plan.memory_mb if plan else 256) * 1024 * 1024)
    pids_max = str(plan.pids_max if plan else 256)

    def setr(which: int, value: int) -> None:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    def run() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if base:
            d = cgroup_dir_for(base, os.getpid())
            try:
                os.mkdir(d)
            except FileExistsError:
                pass
            _write(os.path.join(d, "cgroup.procs"), "0")
            if version == 1:
                _write(os.path.join(d, "memory.limit_in_bytes"), limit)
                try:
                    _write(os.path.join(d, "memory.memsw.limit_in_bytes"), limit)
                except OSError:
                    pass
            else:
                _write(os.path.join(d, "memory.max"), limit)
                for key, value in (("memory.swap.max", "0"), ("pids.max", pids_max)):
                    try:
                        _write(os.path.join(d, key), value)
                    except OSError:
                        pass
        setr(resource.RLIMIT_NOFILE, nofile)
        setr(resource.RLIMIT_CORE, 0)
        setr(resource.RLIMIT_FSIZE, fsize)

    return run


def describe_sandbox(plan: SandboxPlan | None, runtime: str) -> str:
    if plan is None:
        return "no sandbox"
    if plan.cgroup_base:
        return f"cgroup v{plan.cgroup_version} (memory {plan.memory_mb} MB), rlimits (nofile {plan.nofile})"
    bound = "V8 heap limit" if runtime == "node" else "no memory bound"
    return f"rlimits (nofile {plan.nofile}); {bound} (no cgroup)"


def node_binary() -> str:
    return os.environ.get("POLYFN_NODE") or shutil.which("node") or "node"


class Launcher:
    """Spawns processes, watches them on the loop, reports `on_exit(pid, raw_status)`.

    Blanks: for Node, once a function of a given memory size has been launched, `blank_target` processes
    of that size are kept pre-started (sandbox applied, `node` booted, bootstrap loaded, waiting on their
    socket for an instance spec), so the next cold start skips the process start. A blank that dies
    unused is forgotten silently; one that is taken is an instance like any other.
    """

    def __init__(self, on_exit: Callable[[int, int], None], blank_target: int = 1):
        self.on_exit = on_exit
        self.blank_target = blank_target
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._pollers: set[asyncio.Task[None]] = set()
        self._blanks: dict[tuple[Any, ...], list[tuple[int, socket.socket]]] = {}
        self._blank_pids: set[int] = set()
        self._refill: set[tuple[Any, ...]] = set()
        self.stopped = False

    def take_blank(self, key: tuple[Any, ...]) -> tuple[int, socket.socket] | None:
        blanks = self._blanks.get(key)
        while blanks:
            pid, sock = blanks.pop(0)
            if pid in self._blank_pids and pid in self._procs:
                self._blank_pids.discard(pid)
                return pid, sock
            sock.close()
        return None

    def refill(self, key: tuple[Any, ...], argv: list[str], env: dict[str, str], cwd: str,
               plan: SandboxPlan | None, stderr_path: Path | None) -> None:
        """Top up the blanks for `key`, soon (off the current cold start's path)."""
        if self.blank_target <= 0 or key in self._refill or self.stopped:
            return
        self._refill.add(key)

        def run() -> None:
            self._refill.discard(key)
            blanks = self._blanks.setdefault(key, [])
            while len(blanks) < self.blank_target and not self.stopped:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    pid = self.launch(argv, env, cwd, theirs, plan, stderr_path)
                except OSError as e:
                    log.warning("cannot pre-start a %s process: %s", argv[0], e)
                    ours.close()
                    return
                finally:
                    theirs.close()
                self._blank_pids.add(pid)
                blanks.append((pid, ours))

        asyncio.get_running_loop().call_later(0.05, run)

    def launch(self, argv: list[str], env: dict[str, str], cwd: str, conn: socket.socket,
               plan: SandboxPlan | None, stderr_path: Path | None = None) -> int:
        env = {**env, "POLYFN_FD": str(conn.fileno())}
        errf = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, pass_fds=(conn.fileno(),), stdin=subprocess.DEVNULL,
                stdout=errf, stderr=errf, start_new_session=True, preexec_fn=_preexec(plan),
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise LaunchError(f"cannot start {argv[0]}: {e}") from e
        finally:
            if stderr_path and not isinstance(errf, int):
                errf.close()
        self._procs[proc.pid] = proc
        self._watch(proc)
        return proc.pid

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        loop = asyncio.get_running_loop()
        pid = proc.pid
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # very old kernel: poll instead
            self._pollers.add(loop.create_task(self._poll(proc)))
            return

        def ready() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._reap(proc)

        loop.add_reader(pidfd, ready)

    async def _poll(self, proc: subprocess.Popen[bytes]) -> None:
        while True:
            await asyncio.sleep(0.05)
            try:
                pid, status = os.waitpid(proc.pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: never blocks)
            except ChildProcessError:
                pid, status = proc.pid, 0
            if pid:
                self._done(proc, status)
                return

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            _, status = os.waitpid(proc.pid, 0)
        except ChildProcessError:
            status = 0
        self._done(proc, status)

    def _done(self, proc: subprocess.Popen[bytes], status: int) -> None:
        proc.returncode = os.waitstatus_to_exitcode(status) if status else 0
        self._procs.pop(proc.pid, None)
        if proc.pid in self._blank_pids:  # a blank died before it was used: not an instance
            self._blank_pids.discard(proc.pid)
            return
        self.on_exit(proc.pid, status)

    def blank_pids(self) -> list[int]:
        return sorted(self._blank_pids)

    def stop(self) -> None:
        self.stopped = True
        for blanks in self._blanks.values():
            for _, sock in blanks:
                sock.close()
        self._blanks.clear()
        for pid in list(self._procs):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def node_command(spec_json: dict[str, Any] | None, memory_mb: int) -> list[str]:
    """`node bootstrap.js SPEC`, or without SPEC for a blank that reads its spec from the socket."""
    heap = max(16, int(memory_mb * 0.8))
    argv = [node_binary(), f"--max-old-space-size={heap}", str(NODE_DIR / "bootstrap.js")]
    return argv if spec_json is None else [*argv, json.dumps(spec_json)]


def http_command(spec_json: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "polyfn.runtimes.http.proxy", json.dumps(spec_json)]


def api_url(settings: Any) -> str:
    host = settings.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def build_dir(settings: Any, code_sha256: str) -> Path:
    """Where a revision's deploy-time build output lives (e.g. the Go program), shared by code hash."""
    return Path(settings.data_dir) / "build" / code_sha256[:24]


def launch_instance(launcher: Launcher, settings: Any, rev: Any, ispec: Any, plan: SandboxPlan | None,
                    conn: socket.socket) -> tuple[int, socket.socket | None]:
    """Start one `node` or `http` instance for revision `rev` (InstanceSpec `ispec`) on `conn`.

    Returns its pid and, when a pre-started Node blank became the instance, the blank's own connection
    (which then replaces the caller's)."""
    spec = rev.spec
    payload: dict[str, Any] = {
        "instance_id": ispec.instance_id, "function": ispec.function, "revision": ispec.revision,
        "flavor": ispec.flavor, "handler": ispec.handler, "code_dir": ispec.code_dir, "deps_dir": ispec.deps_dir,
        "concurrency": ispec.concurrency, "memory_mb": ispec.memory_mb, "timeout": ispec.timeout,
        "env": dict(ispec.env), "log_line_max": ispec.log_line_max, "log_lines_max": ispec.log_lines_max,
        "api_url": api_url(settings), "sandbox": describe_sandbox(plan, spec.runtime),
    }
    # A clean environment, as for Python instances: nothing of the server's (keys, credentials) leaks.
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    env.update(HOME="/tmp", TMPDIR="/tmp", POLYFN_API_URL=payload["api_url"])
    run_dir = Path(settings.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if spec.runtime == "node":
        key = ("node", spec.memory, plan.cgroup_base if plan else "")
        launcher.refill(key, node_command(None, spec.memory), env, "/", plan, run_dir / "node-instances.log")
        blank = launcher.take_blank(key)
        if blank is not None:
            pid, sock = blank
            body = json.dumps(payload).encode()
            try:
                sock.sendall(len(body).to_bytes(4, "big") + body)  # the spec frame (JSON) the blank waits for
                return pid, sock
            except OSError:
                sock.close()  # it died meanwhile: start a fresh process instead
        argv = node_command(payload, spec.memory)
    elif spec.runtime == "http":
        payload["build_dir"] = str(build_dir(settings, rev.code_sha256))
        payload["ready_timeout"] = max(0.5, 0.7 * min(settings.init_timeout, max(spec.timeout, 1.0)))
        payload["private_network"] = bool(getattr(settings, "http_private_network", True))
        argv = http_command(payload)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        src = str(Path(__file__).resolve().parents[2])  # the polyfn package's import root
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    else:
        raise LaunchError(f"no launcher for runtime {spec.runtime!r}")
    return launcher.launch(argv, env, ispec.code_dir, conn, plan, run_dir / f"{spec.runtime}-instances.log"), None
