"""The sandbox layers, each exercised for real in a forked child (root needed for most of them)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from polyfn.runtimes.python.procs import set_pdeathsig
from polyfn.sandbox import Prepared, SandboxError, SandboxPlan, apply, namespaces

from .. import needs

ROOT = os.geteuid() == 0


def in_child(fn: Callable[[], object]) -> tuple[int, bytes]:
    """Run `fn` in a forked child; (raw wait status, what it returned as bytes)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, str(fn()).encode())
            code = 0
        except BaseException as e:
            os.write(w, f"{type(e).__name__}: {e}".encode())
            code = 1
        os._exit(code)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, out


@pytest.fixture(params=["python", "native"])
def helper(request: pytest.FixtureRequest) -> str:
    """The pid namespace's supervisor and init: the forked Python ones, or the native program
    (sandbox/pidinit.c) they exec when it is built."""
    if request.param == "python":
        return ""
    from polyfn.sandbox import pidinit

    path, why = pidinit.build()
    if not path:
        needs.missing(f"the native pid namespace helper cannot be built: {why}")
    return path


def helpers_of(pid: int) -> list[str]:
    """The programs of the supervisor `pid` and of its child (the namespace's init)."""
    out = [os.readlink(f"/proc/{pid}/exe")]
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        out += [os.readlink(f"/proc/{c}/exe") for c in f.read().split()]
    return out


@needs.layer("pid")
@pytest.mark.parametrize(("how", "expect"), [
    ("exit3", ("exit", 3)), ("sigsegv", ("signal", signal.SIGSEGV)), ("sigkill", ("signal", signal.SIGKILL)),
    ("sigpipe", ("signal", signal.SIGPIPE)),
])
def test_pid_namespace_passes_the_instance_status_up(how: str, expect: tuple[str, int], helper: str) -> None:
    """The supervisor (the zygote's child) ends exactly like the instance inside the namespace."""
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import faulthandler

            faulthandler.disable()
            os.close(r)
            os.close(go_w)
            prepared = Prepared()
            namespaces.enter({"mount", "pid"}, prepared, set_pdeathsig, helper)
            # Now the instance: pid 2 of its namespace.
            if os.getpid() != 2 or "pid" not in prepared.namespaces:
                os._exit(99)
            os.write(w, b"ready\n")
            os.read(go_r, 1)  # the parent has looked at the helpers' programs
            if how == "exit3":
                os._exit(3)
            sig = {"sigsegv": signal.SIGSEGV, "sigkill": signal.SIGKILL, "sigpipe": signal.SIGPIPE}[how]
            if sig != signal.SIGKILL:
                signal.signal(sig, signal.SIG_DFL)  # (Python ignores SIGPIPE)
            os.kill(os.getpid(), sig)
        finally:
            os._exit(98)
    os.close(w)
    os.close(go_r)
    assert os.read(r, 100) == b"ready\n"
    expected = [helper or os.path.realpath(sys.executable)] * 2
    deadline = time.monotonic() + 30  # each helper execs right after its fork, maybe after "ready"
    while (programs := helpers_of(pid)) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    os.write(go_w, b"x")
    os.close(go_w)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if expect[0] == "exit":
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == expect[1], status
    else:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == expect[1], status
    assert programs == expected, programs


@needs.layer("pid")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_supervisor_kills_everything_inside(sig: int, helper: str) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            namespaces.enter({"mount", "pid"}, Prepared(), set_pdeathsig, helper)
            set_pdeathsig()
            child = os.fork()  # a grandchild that would like to outlive everyone
            if child == 0:
                time.sleep(60)
                os._exit(0)
            os.write(w, b"%d\n" % child)
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 100).strip().isdigit()
    os.kill(pid, sig)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig, status
    # Every process of that namespace is gone: no process on the host still holds the pipe's write end.
    assert os.read(r, 100) == b""
    os.close(r)


@needs.layer("pid")
def test_init_reaps_orphans(helper: str) -> None:
    """An orphan of the instance (its parent gone) is reaped by the namespace's init: no zombie stays."""

    def body() -> str:
        namespaces.enter({"mount", "pid"}, Prepared(), set_pdeathsig, helper)
        told_r, told_w = os.pipe()  # the orphan's pid, to the instance
        end_r, end_w = os.pipe()  # closed by the instance: the orphan ends
        parent = os.fork()
        if parent == 0:  # forks the orphan-to-be and leaves at once
            orphan = os.fork()
            if orphan == 0:
                os.close(end_w)
                os.read(end_r, 1)  # until the instance says so: by then its parent is gone
                os._exit(0)
            os.write(told_w, b"%d\n" % orphan)
            os._exit(0)
        os.close(end_r)
        os.waitpid(parent, 0)
        orphan = int(os.read(told_r, 100).split()[0])
        with open(f"/proc/{orphan}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        os.close(end_w)  # the orphan ends now; only init can reap it
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{orphan}") and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"parent {ppid}, gone {not os.path.exists(f'/proc/{orphan}')}"

    status, out = in_child(body)
    assert status == 0 and out == b"parent 1, gone True", out


def test_the_native_helper_is_used_only_when_nobody_else_can_write_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from polyfn.sandbox import pidinit

    path, why = pidinit.build()
    if not path:
        needs.missing(f"the native pid namespace helper cannot be built: {why}")
    assert pidinit._trusted(Path(path))
    copy = tmp_path / "pidinit"
    copy.write_bytes(Path(path).read_bytes())
    os.chmod(tmp_path, 0o755)
    os.chmod(copy, 0o755)
    assert pidinit._trusted(copy)
    os.chmod(copy, 0o775)
    assert not pidinit._trusted(copy)
    os.chmod(copy, 0o755)
    os.chmod(tmp_path, 0o777)
    assert not pidinit._trusted(copy)


@needs.layer("mount")
def test_mounts_hide_data_dir_and_bind_code_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    code = data / "code" / "fn" / "abc"
    code.mkdir(parents=True)
    (code / "handler.py").write_text("x = 1\n")
    (data / "admin.key").write_text("secret\n")

    def body() -> str:
        prepared = Prepared()
        namespaces.enter({"mount"}, prepared, set_pdeathsig)
        plan = SandboxPlan(memory_mb=64, tmp_mb=8, hide=[str(data)], binds=[str(code)])
        apply(plan, prepared)
        seen = sorted(os.listdir(data))
        readable = open(code / "handler.py").read().strip()
        try:
            open(code / "handler.py", "a")
            writable = "yes"
        except OSError:
            writable = "no"
        return f"{seen} {readable} {writable} {os.path.exists(data / 'admin.key')}"

    status, out = in_child(body)
    assert status == 0, out
    assert out.decode() == "['code'] x = 1 no False"


def test_required_namespace_missing_fails_closed() -> None:
    prepared = Prepared(notes=["unshare: Operation not permitted"])
    with pytest.raises(SandboxError, match="pid namespace required"):
        apply(SandboxPlan(memory_mb=64), prepared, ("pid",))


@needs.layer("net")
def test_network_none_has_loopback_only() -> None:
    def body() -> str:
        import socket

        prepared = Prepared()
        namespaces.enter({"net"}, prepared, set_pdeathsig)
        apply(SandboxPlan(memory_mb=64, network="none"), prepared)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        socket.create_connection(srv.getsockname(), timeout=1).close()  # loopback works
        try:
            socket.create_connection(("10.255.255.1", 80), timeout=1)
            return "egress"
        except OSError as e:
            return type(e).__name__

    status, out = in_child(body)
    assert status == 0 and out != b"egress", out


@needs.layer("userns")
@pytest.mark.skipif(not ROOT, reason="drops to an unprivileged uid itself to play a non-root server")
def test_user_namespace_layers_for_a_non_root_server() -> None:
    """What a laptop (no root) gets: mount + pid namespaces owned by a user namespace, private /tmp,
    hidden data dir, loopback-only network on demand, seccomp — all as an unprivileged uid."""
    import shutil
    import socket  # noqa: F401 - imported before the uid drop: the stdlib may be out of reach afterwards
    import tempfile

    # seccomp imports ctypes.util: a stdlib under a 0700 /root (pyenv) is out of reach after the uid drop, and
    # the test passed only when another test of the same worker had imported it first
    from polyfn.sandbox import linux, mounts, seccomp  # noqa: F401

    top = tempfile.mkdtemp(prefix="polyfn-userns-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        data = os.path.join(top, "data")
        code = os.path.join(data, "code", "fn")
        os.makedirs(code)
        with open(os.path.join(code, "handler.py"), "w") as f:
            f.write("x = 1\n")
        with open(os.path.join(data, "admin.key"), "w") as f:
            f.write("secret\n")
        for d in (data, os.path.join(data, "code"), code):
            os.chmod(d, 0o755)
        os.chmod(os.path.join(data, "admin.key"), 0o644)  # readable by the test uid: only the mounts hide it

        def body() -> str:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            linux.prctl(4, 1)  # PR_SET_DUMPABLE: a uid change clears it; a never-root process has it
            prepared = Prepared()
            namespaces.enter({"user", "mount", "pid", "net"}, prepared, set_pdeathsig)
            plan = SandboxPlan(memory_mb=64, tmp_mb=4, hide=[data], binds=[code], network="none", seccomp="python")
            applied = apply(plan, prepared, ("user", "mount", "pid"))
            import socket as s

            try:
                s.create_connection(("10.255.255.1", 80), timeout=1)
                net = "egress"
            except OSError as e:
                net = type(e).__name__
            return json_dumps({
                "pid": os.getpid(), "uid": os.getuid(), "ns": prepared.namespaces, "applied": applied,
                "data": sorted(os.listdir(data)), "code": open(os.path.join(code, "handler.py")).read(),
                "tmp": sorted(os.listdir("/tmp")), "net": net,
            })

        status, out = in_child(body)
        assert status == 0, out
        import json

        res = json.loads(out)
        assert res["pid"] == 2 and "user" in res["ns"] and "net" not in res["ns"]
        assert res["data"] == ["code"] and res["code"] == "x = 1\n"
        assert res["tmp"] == [os.path.basename(top)]  # a private /tmp: only the re-bound code path is in it
        assert res["net"] != "egress"
        assert any("seccomp" in a for a in res["applied"])
    finally:
        shutil.rmtree(top, ignore_errors=True)


def json_dumps(value: object) -> str:
    import json

    return json.dumps(value)
