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
    """Spawns processes, watches them on the loop, reports `on_exit(pid, raw_status)`."""

    def __init__(self, on_exit: Callable[[int, int], None]):
        self.on_exit = on_exit
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._pollers: set[asyncio.Task[None]] = set()

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
        self.on_exit(proc.pid, status)

    def stop(self) -> None:
        for pid in list(self._procs):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def node_command(spec_json: dict[str, Any], memory_mb: int) -> list[str]:
    heap = max(16, int(memory_mb * 0.8))
    return [node_binary(), f"--max-old-space-size={heap}", str(NODE_DIR / "bootstrap.js"), json.dumps(spec_json)]


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
                    conn: socket.socket) -> int:
    """Start one `node` or `http` instance for revision `rev` (InstanceSpec `ispec`); returns its pid."""
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
    if spec.runtime == "node":
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
    run_dir = Path(settings.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return launcher.launch(argv, env, ispec.code_dir, conn, plan, run_dir / f"{spec.runtime}-instances.log")
