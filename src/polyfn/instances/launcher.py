"""Start instances of runtimes that have no zygote (`node`, `http`) as fresh processes.

A launched instance gets what a forked Python instance gets: its end of the socketpair (inherited, its
number in `$POLYFN_FD`), death with the server (PR_SET_PDEATHSIG), its own session and the same sandbox
layers, applied by the same code: the process is `python -I -m polyfn.sandbox.spawn`, which runs
`sandbox.prepare` (cgroups; mount, net, pid namespaces) and the layers of `sandbox.apply` (network, mounts,
rlimits, uid, no_new_privs, seccomp), then execs the runtime (see that module for the two modes). Its exit
status reaches the manager's `on_exit` exactly as the zygote reports it for forked children: the launcher
watches a pidfd on the event loop and reaps the process itself (raw wait status, so
`Instance.describe_exit` reads signals and codes alike).

The Popen `preexec` only sets PR_SET_PDEATHSIG (one system call through a pre-loaded libc): the server
may have threads, so nothing there may take a Python-level lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from polyfn.loops import one_item
from polyfn.protocol.spec import SAFE_ENV
from polyfn.runtimes import dotnet
from polyfn.sandbox import seccomp
from polyfn.sandbox.plan import SandboxPlan
from polyfn.sandbox.spawn import Config

log = logging.getLogger("polyfn.launcher")

NODE_DIR = Path(__file__).resolve().parents[1] / "runtimes" / "node"
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class LaunchError(OSError):
    pass


def _preexec() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def prepare_env(plan: SandboxPlan, base: dict[str, str] | None = None) -> dict[str, str]:
    """What `sandbox.prepare` reads in the spawned process: the node's namespaces and cgroup hierarchies
    (`base`, the zygote's environment), with the cgroup limits preset to this plan's (off the cold path)."""
    env = dict(base or {})
    if plan.cgroup_base:
        env.setdefault("POLYFN_CGROUP_BASE", plan.cgroup_base)
        env.setdefault("POLYFN_CGROUP_VERSION", str(plan.cgroup_version))
        env["POLYFN_CGROUP_PRESET"] = f"{plan.memory_mb},{plan.pids_max},{plan.cpu_shares},{plan.cpu_quota}"
    else:
        for k in ("POLYFN_CGROUP_BASE", "POLYFN_CGROUP_EXTRA", "POLYFN_CGROUP_PRESET"):
            env.pop(k, None)
    return env


def spawn_command(cfg_fd: int) -> list[str]:
    return [sys.executable, "-I", "-m", "polyfn.sandbox.spawn", str(cfg_fd)]


def node_binary() -> str:
    return os.environ.get("POLYFN_NODE") or shutil.which("node") or "node"


#: Seconds after a C# cold start before the next pre-started host is started (bench/dotnet.py measured it).
DOTNET_REFILL_DELAY = 0.3


class Blank(msgspec.Struct):
    pid: int
    sock: socket.socket  # the server's end of the instance connection
    ctrl: socket.socket  # the spawn agent's control socket: the function's plan goes there


class Launcher:
    """Spawns processes, watches them on the loop, reports `on_exit(pid, raw_status)`.

    Blanks: for Node, once a function with a given memory size and network kind has been launched,
    `blank_target` processes of that kind are kept pre-started (cgroup joined, namespaces entered, `node`
    booted under seccomp, bootstrap loaded, waiting for an instance spec), so the next cold start skips the
    process start. A blank that dies unused is forgotten silently; one that is taken is an instance.
    """

    def __init__(self, on_exit: Callable[[int, int], None], blank_target: int = 1):
        self.on_exit = on_exit
        self.blank_target = blank_target
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._pollers: set[asyncio.Task[None]] = set()
        self._blanks: dict[tuple[Any, ...], list[Blank]] = {}
        self._blank_pids: set[int] = set()
        self._refill: set[tuple[Any, ...]] = set()
        self.stopped = False

    def take_blank(self, key: tuple[Any, ...]) -> Blank | None:
        blanks = self._blanks.get(key)
        while blanks:
            blank = blanks.pop(0)
            if blank.pid in self._blank_pids and blank.pid in self._procs:
                self._blank_pids.discard(blank.pid)
                return blank
            blank.sock.close()
            blank.ctrl.close()
        return None

    def start_blank(self, argv: list[str], env: dict[str, str], plan: SandboxPlan, prepare: dict[str, str],
                    required: list[str], stderr_path: Path | None) -> Blank:
        """A process that has its sandbox's function-independent layers and waits for a function."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ctrl, ctrl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = self.launch(argv, env, "/", theirs, plan, stderr_path, prepare=prepare, required=required,
                              ctrl=ctrl_child)
        except BaseException:
            ours.close()
            ctrl.close()
            raise
        finally:
            theirs.close()
            ctrl_child.close()
        return Blank(pid, ours, ctrl)

    def refill(self, key: tuple[Any, ...], make: Callable[[], Blank], delay: float = 0.05) -> None:
        """Top up the blanks for `key` in `delay` seconds (off the current cold start's path)."""
        if self.blank_target <= 0 or key in self._refill or self.stopped:
            return
        self._refill.add(key)

        def run() -> None:
            self._refill.discard(key)
            blanks = self._blanks.setdefault(key, [])
            while len(blanks) < self.blank_target and not self.stopped:
                try:
                    blank = make()
                except OSError as e:
                    log.warning("cannot pre-start a process: %s", e)
                    return
                self._blank_pids.add(blank.pid)
                blanks.append(blank)

        asyncio.get_running_loop().call_later(delay, run)

    def launch(self, argv: list[str], env: dict[str, str], cwd: str, conn: socket.socket,
               plan: SandboxPlan | None, stderr_path: Path | None = None, *, prepare: dict[str, str] | None = None,
               required: list[str] | tuple[str, ...] = (), ctrl: socket.socket | None = None) -> int:
        """Start `argv` with `conn` as its instance connection. With a `plan`, through the sandbox spawner:
        every layer applied before exec (`ctrl` None), or as an agent-run blank waiting for its function's
        plan on `ctrl` (see polyfn.sandbox.spawn)."""
        env = {**env, "POLYFN_FD": str(conn.fileno())}
        pass_fds = [conn.fileno()]
        cfg_fd = -1
        if plan is not None:
            cfg = Config(mode="exec" if ctrl is None else "agent", argv=argv, env=env, cwd=cwd,
                         prepare_env=prepare_env(plan, prepare), plan=plan, required=list(required),
                         fd=conn.fileno(), ctrl=ctrl.fileno() if ctrl is not None else -1,
                         seccomp_program=seccomp.build(plan.seccomp) if plan.seccomp else b"")
            cfg_fd = os.memfd_create("polyfn-spawn", os.MFD_CLOEXEC)  # never argv: the plan may hold secrets
            os.write(cfg_fd, msgspec.json.encode(cfg))
            pass_fds.append(cfg_fd)
            if ctrl is not None:
                pass_fds.append(ctrl.fileno())
            argv = spawn_command(cfg_fd)
            cwd = "/"
        errf = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
                stdout=errf, stderr=errf, start_new_session=True, preexec_fn=_preexec,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise LaunchError(f"cannot start {argv[0]}: {e}") from e
        finally:
            if stderr_path and not isinstance(errf, int):
                errf.close()
            if cfg_fd >= 0:
                os.close(cfg_fd)
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
        with one_item(log, "launcher: the exit of pid %d", proc.pid):
            self.on_exit(proc.pid, status)

    def blank_pids(self) -> list[int]:
        return sorted(self._blank_pids)

    def stop(self) -> None:
        self.stopped = True
        for blanks in self._blanks.values():
            for blank in blanks:
                blank.sock.close()
                blank.ctrl.close()
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


def http_command() -> list[str]:
    """The http runtime's proxy; it reads its spec from `$POLYFN_SPEC`."""
    return [sys.executable, "-m", "polyfn.runtimes.http.proxy"]


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
                    conn: socket.socket, prepare: dict[str, str] | None = None,
                    urls: dict[str, str] | None = None) -> tuple[int, socket.socket | None]:
    """Start one `node` or `http` instance for revision `rev` (InstanceSpec `ispec`) on `conn`.

    `prepare` is what `sandbox.prepare` reads (the zygote's environment: namespaces, cgroup hierarchies);
    `urls` rewrites polyfn's endpoint URLs for `network: polyfn`. Returns the pid and, for Node (always a
    blank: pre-started, or started now and handed its function at once), the blank's own connection,
    which then replaces the caller's."""
    spec = rev.spec
    api = api_url(settings)
    if plan is not None and plan.network in ("polyfn", "egress"):
        for outside, inside in (urls or {}).items():
            api = api.replace(outside, inside)
    payload: dict[str, Any] = {
        "instance_id": ispec.instance_id, "function": ispec.function, "revision": ispec.revision,
        "flavor": ispec.flavor, "handler": ispec.handler, "code_dir": ispec.code_dir, "deps_dir": ispec.deps_dir,
        "concurrency": ispec.concurrency, "memory_mb": ispec.memory_mb, "timeout": ispec.timeout,
        "env": dict(ispec.env), "log_line_max": ispec.log_line_max, "log_lines_max": ispec.log_lines_max,
        "api_url": api, "sandbox": "no sandbox" if plan is None else "",
    }
    # A clean environment, as for Python instances: nothing of the server's (keys, credentials) leaks.
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    env.update(HOME="/tmp", TMPDIR="/tmp", POLYFN_API_URL=payload["api_url"])
    run_dir = Path(settings.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    required = list(ispec.namespaces)
    if spec.runtime == "node":
        return _launch_node(launcher, spec, plan, payload, env, prepare, required, run_dir / "node-instances.log")
    if spec.runtime not in ("http", "dotnet"):  # dotnet: the proxy runs the C# host (runtimes/dotnet)
        raise LaunchError(f"no launcher for runtime {spec.runtime!r}")
    payload["runtime"] = spec.runtime
    if spec.runtime == "dotnet":  # the node's compiled shims' class-library images, shared by every revision
        payload["dotnet_aot"] = str(dotnet.shim_dir(settings.data_dir) / dotnet.AOT_DIR)
    payload["build_dir"] = str(build_dir(settings, rev.code_sha256))
    payload["ready_timeout"] = max(0.5, 0.7 * min(settings.init_timeout, max(spec.timeout, 1.0)))
    private = bool(getattr(settings, "http_private_network", True))
    if plan is not None:
        if os.path.isdir(payload["build_dir"]):  # the deploy-time build (a Go program …) lives in the data dir
            plan = msgspec.structs.replace(plan, binds=[*plan.binds, payload["build_dir"]])
        if spec.runtime == "dotnet" and dotnet.shim_dir(settings.data_dir).is_dir():
            # the node's compiled host, shims and class-library images (a pre-started host may still be
            # opening them when its function's mounts go up)
            plan = msgspec.structs.replace(plan, binds=[*plan.binds, str(dotnet.shim_dir(settings.data_dir))])
        if "net" in required and plan.network in ("all", "host") and private:
            # the sandbox makes the private namespace (the proxy itself could not: seccomp, uid)
            plan = msgspec.structs.replace(plan, network="none")
        if plan.network not in ("all", "host"):
            payload["sandbox_network"] = "loopback only" if plan.network == "none" else plan.network
            private = False
    payload["private_network"] = private
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    src = str(Path(__file__).resolve().parents[2])  # the polyfn package's import root
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    shims = dotnet.shim_dir(settings.data_dir)
    if spec.runtime == "dotnet" and plan is not None and (shims / dotnet.HOST_EXE).exists():
        # pre-started: the C# host boots (Mono, shims, listener) before its function is known
        env["POLYFN_DOTNET_SHIMS"] = str(shims)
        return _launch_blank(launcher, "dotnet", http_command(), plan, payload, env, prepare, required,
                             run_dir / "http-instances.log")
    env["POLYFN_SPEC"] = json.dumps(payload)  # not argv: /proc/PID/cmdline is world-readable
    return launcher.launch(http_command(), env, ispec.code_dir, conn, plan, run_dir / "http-instances.log",
                           prepare=prepare, required=required), None


def _launch_node(launcher: Launcher, spec: Any, plan: SandboxPlan | None, payload: dict[str, Any],
                 env: dict[str, str], prepare: dict[str, str] | None, required: list[str],
                 log_path: Path) -> tuple[int, socket.socket | None]:
    return _launch_blank(launcher, "node", node_command(None, spec.memory), plan, payload, env, prepare, required,
                         log_path)


def _launch_blank(launcher: Launcher, kind: str, argv: list[str], plan: SandboxPlan | None, payload: dict[str, Any],
                  env: dict[str, str], prepare: dict[str, str] | None, required: list[str],
                  log_path: Path) -> tuple[int, socket.socket | None]:
    """A pre-started process of `kind` (Node's bootstrap, the C# host's proxy) handed its function, or one
    started now and handed it at once."""
    body = json.dumps(payload).encode()
    if plan is None:  # no sandbox at all (tests of the launcher itself)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = launcher.launch(argv, env, "/", theirs, None, log_path)
        finally:
            theirs.close()
        ours.sendall(len(body).to_bytes(4, "big") + body)
        return pid, ours
    # What a blank may be made with before its function is known: nothing function-specific.
    generic = msgspec.structs.replace(plan, uid=0, gid=0, hide=[], binds=[], secret_files={},
                                      relay_socket="", relay_ports=[], allow=[], net_group=0,
                                      etc={}, tmp_mb=0)  # (mounts, /tmp included, are made at hand-over)
    key = (kind, msgspec.json.encode(generic))
    blank_prepare = dict(prepare or {})
    if kind == "dotnet" and plan.root and "mount" in required:
        # the shared part of the root filesystem is built in the blank, off the cold path (as Python blanks
        # do); the hand-over only binds the function's own paths and pivots (sandbox.mounts, rootfs.enter_staged)
        blank_prepare["POLYFN_SANDBOX_ROOT"] = json.dumps({"root": plan.root, "mask": plan.root_mask,
                                                           "tmp_mb": plan.tmp_mb})

    def make() -> Blank:
        return launcher.start_blank(argv, env, generic, blank_prepare, required, log_path)

    # A C# blank's start (Mono, its warm-up) takes both cores for a while: not while this cold start's first
    # request is still being served.
    launcher.refill(key, make, DOTNET_REFILL_DELAY if kind == "dotnet" else 0.05)
    plan_body = msgspec.json.encode(plan)
    blank = launcher.take_blank(key)
    if blank is not None and not _hand_over(blank, plan_body, body):
        # A pre-started blank that died while it waited (its exit not reaped yet when it was taken) must not
        # fail this cold start: the function gets a process started now instead.
        log.warning("pre-started %s process %d was gone when taken; starting another", kind, blank.pid)
        blank.sock.close()
        blank = None
    if blank is None:
        blank = make()
        _hand_over(blank, plan_body, body)  # if this one dies too, the caller sees its exit status
    return blank.pid, blank.sock


def _hand_over(blank: Blank, plan_body: bytes, body: bytes) -> bool:
    """Give a blank its function: the plan to its agent (mounts, relay, uid), then the spec frame (JSON) the
    bootstrap waits for. False if the process is gone."""
    try:
        blank.ctrl.sendall(len(plan_body).to_bytes(4, "big") + plan_body)
        blank.sock.sendall(len(body).to_bytes(4, "big") + body)
    except OSError:
        return False
    finally:
        blank.ctrl.close()
    return True
