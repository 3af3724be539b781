"""The sandbox for runtimes that are exec'd rather than forked from a zygote (`node`, `http`).

The launcher starts `python -I -m polyfn.sandbox.spawn CFG_FD`; `CFG_FD` is a memfd holding a `Config`
(never argv: argv is world-readable and the plan may carry secrets). This helper runs the same code as a
forked Python instance — `sandbox.prepare` (cgroups, mount/ipc/uts, net, pid namespaces: it becomes the
supervisor, init and pid 2) and the layers of `sandbox.apply` — and then execs the runtime. Two modes:

* `exec` (the `http` runtime, whose function is known at launch; a deploy-time build, deploy/isolate.py):
  apply every layer, exec the program.
* `agent` (pre-started Node processes, which exist before their function is chosen): pid 2 applies what
  does not depend on the function (cgroup limits, network kind, rlimits) and forks the runtime, which
  installs `no_new_privs` + seccomp and execs `node` — still root, running only polyfn's bootstrap.
  When the launcher hands the blank a function it sends the function's full plan on the control socket:
  pid 2 (the agent, outside the seccomp filter, in the same mount and network namespaces) sets up the
  mounts (private /tmp, data dir hidden, code bound back read-only, /run/secrets) and, for
  `network: polyfn`, the relay listeners, then opens the gate (`$POLYFN_GATE_FD`): one JSON line with the
  uid/gid to switch to. The bootstrap calls setgroups/setgid/setuid itself before loading any user code
  (glibc applies them to every thread). A failure reaches the runtime through the gate, and the caller
  as a typed init error (fail closed). The agent then waits and ends exactly as the runtime ended.
"""

from __future__ import annotations

import os
import select
import signal
import sys

import msgspec

from polyfn.sandbox.plan import SandboxPlan


class Config(msgspec.Struct, kw_only=True):
    mode: str  # "exec" | "agent"
    argv: list[str]
    env: dict[str, str]
    cwd: str = "/"  # changed into after the mounts (a directory opened before would bypass them)
    prepare_env: dict[str, str] = {}  # what `sandbox.prepare` reads (cgroup base, namespaces, preset)
    plan: SandboxPlan
    required: list[str] = []  # namespaces the server counts on (fail closed without them)
    fd: int = -1  # the instance's connection to the server ($POLYFN_FD)
    ctrl: int = -1  # agent mode: the launcher's control socket (the function's plan arrives there)
    seccomp_program: bytes = b""  # the plan's seccomp filter, compiled once by the server (sandbox/seccomp.py)
    tag_env: bool = True  # add POLYFN_SANDBOX_INFO and POLYFN_HOST_PID (false: a build's environment is only `env`)


def _pdeathsig() -> None:
    from polyfn.sandbox import linux

    linux.prctl(linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _host_pid(prepared: object) -> str:
    """The instance's pid as the node sees it (`ps`, the server's logs): in a pid namespace getpid() is 2."""
    return str(getattr(prepared, "host_pid", 0) or os.getpid())


def _keep_only(fds: set[int]) -> None:
    for fd in os.listdir("/proc/self/fd"):
        n = int(fd)
        if n > 2 and n not in fds:
            try:
                os.close(n)
            except OSError:
                pass


def _init_error(fd: int, message: str) -> None:
    """Report a sandbox failure the way an instance reports an init failure (typed, once); without an instance
    connection (a build), on stderr."""
    from polyfn.protocol import InitError, encode

    if fd < 0:
        try:
            os.write(2, message.encode() + b"\n")
        except OSError:
            pass
        return
    try:
        os.write(fd, encode(InitError({"errorType": "Runtime.SandboxError", "errorMessage": message,
                                       "stackTrace": []}, [])))
    except OSError:
        pass


def _read_frame(fd: int) -> bytes:
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = os.read(fd, 65536)
        if not chunk:
            raise EOFError("the launcher closed the control socket")
        buf += chunk
    return buf[4:4 + int.from_bytes(buf[:4], "big")]


def _exec_mode(cfg: Config, prepared: object) -> None:
    from polyfn import sandbox

    applied = sandbox.apply(cfg.plan, prepared, tuple(cfg.required))  # type: ignore[arg-type]
    os.chdir(cfg.cwd)
    _keep_only({cfg.fd})
    env = cfg.env if not cfg.tag_env else {**cfg.env, "POLYFN_SANDBOX_INFO": ", ".join(applied),
                                           "POLYFN_HOST_PID": _host_pid(prepared)}
    os.execve(cfg.argv[0], cfg.argv, env)


def _agent_mode(cfg: Config, prepared: object) -> None:
    from polyfn import sandbox
    from polyfn.sandbox import limits, linux, namespaces, seccomp

    plan = cfg.plan
    sandbox.check_required(prepared, tuple(cfg.required))  # type: ignore[arg-type]
    applied = [x for x in (sandbox.limit_cgroup(plan, prepared),  # type: ignore[arg-type]
                           sandbox.network(plan, prepared, relay=False,  # type: ignore[arg-type]
                                           keep_host=True)) if x]
    gate_r, gate_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            _pdeathsig()
            os.close(gate_w)
            limits.apply_rlimits(plan)
            linux.set_no_new_privs()
            if plan.seccomp:
                seccomp.install(plan.seccomp)
            _keep_only({cfg.fd, gate_r})
            # User code runs in this process: its stdout/stderr must not be the node-wide log file every
            # runtime of this kind shares (a function could fill it up to RLIMIT_FSIZE for all of them).
            # What it prints reaches its activation through the bootstrap's capture, as for Python.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
            os.set_inheritable(gate_r, True)  # os.pipe() fds are close-on-exec
            os.execve(cfg.argv[0], cfg.argv, {**cfg.env, "POLYFN_GATE_FD": str(gate_r),
                                              "POLYFN_HOST_PID": _host_pid(prepared)})
        except BaseException as e:
            _init_error(cfg.fd, f"sandbox: cannot start {cfg.argv[0]}: {e}")
        os._exit(127)
    os.close(gate_r)
    os.close(cfg.fd)
    applied.append(limits.apply_rlimits(plan))  # the same limits as the runtime's (the agent is tiny)
    if plan.seccomp:
        applied.append(f"seccomp ({plan.seccomp} allow-list)")
    gate: dict[str, object]
    pidfd = os.pidfd_open(child)
    ready, _, _ = select.select([cfg.ctrl, pidfd], [], [])
    if cfg.ctrl in ready:
        try:
            full = msgspec.json.decode(_read_frame(cfg.ctrl), type=SandboxPlan)
            host_pid = prepared.host_pid or os.getpid()  # type: ignore[attr-defined]
            if joined := sandbox.join_group(full, prepared):  # type: ignore[arg-type]
                applied.append(joined)
            if full.network in sandbox.RELAYED and (full.relay_socket or full.network == "polyfn" or full.allow):
                from polyfn.sandbox import relay

                applied.append(relay.expose(full.relay_socket, full.relay_ports, host_pid, full.allow))
            if "mount" in prepared.namespaces:  # type: ignore[attr-defined]
                from polyfn.sandbox import mounts

                applied.append(mounts.setup(full, prepared))  # type: ignore[arg-type]
            if "pid" in prepared.namespaces:  # type: ignore[attr-defined]
                applied.append("pid ns")
            if full.uid:
                applied.append(f"uid {full.uid}")
            gate = {"ok": True, "uid": full.uid, "gid": full.gid, "sandbox": ", ".join(applied)}
        except (EOFError, msgspec.DecodeError):
            os.kill(child, signal.SIGKILL)
            gate = {"ok": False, "error": "no function was handed to this process"}
        except Exception as e:  # fail closed: the runtime reports it and exits
            gate = {"ok": False, "error": f"sandbox: {e}"}
        try:
            os.write(gate_w, msgspec.json.encode(gate) + b"\n")
        except OSError:
            pass
    os.close(gate_w)
    os.close(cfg.ctrl)
    os.close(pidfd)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(70)
    namespaces.end_like(status)


def main(argv: list[str]) -> None:
    cfg_fd = int(argv[1])
    raw = os.pread(cfg_fd, os.fstat(cfg_fd).st_size, 0)
    os.close(cfg_fd)
    cfg = msgspec.json.decode(raw, type=Config)
    try:
        from polyfn import sandbox

        if cfg.seccomp_program:
            from polyfn.sandbox import seccomp

            seccomp.provide(cfg.plan.seccomp, cfg.seccomp_program)

        prepared = sandbox.prepare(cfg.prepare_env, _pdeathsig)
        if cfg.mode == "exec":
            _exec_mode(cfg, prepared)
        else:
            _agent_mode(cfg, prepared)
    except BaseException as e:  # report why, typed, then exit: never run with less isolation
        _init_error(cfg.fd, str(e) if str(e).startswith("sandbox:") else f"sandbox: {e}")
        os._exit(1)


if __name__ == "__main__":
    main(sys.argv)
