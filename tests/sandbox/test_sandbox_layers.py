"""The sandbox layers, each exercised for real in a forked child (root needed for most of them)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

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


@needs.layer("pid")
@pytest.mark.parametrize(("how", "expect"), [
    ("exit3", ("exit", 3)), ("sigsegv", ("signal", signal.SIGSEGV)), ("sigkill", ("signal", signal.SIGKILL)),
])
def test_pid_namespace_passes_the_instance_status_up(how: str, expect: tuple[str, int]) -> None:
    """The supervisor (the zygote's child) ends exactly like the instance inside the namespace."""
    pid = os.fork()
    if pid == 0:
        try:
            import faulthandler

            faulthandler.disable()
            prepared = Prepared()
            namespaces.enter({"mount", "pid"}, prepared, set_pdeathsig)
            # Now the instance: pid 2 of its namespace.
            if os.getpid() != 2 or "pid" not in prepared.namespaces:
                os._exit(99)
            if how == "exit3":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGSEGV if how == "sigsegv" else signal.SIGKILL)
        finally:
            os._exit(98)
    _, status = os.waitpid(pid, 0)
    if expect[0] == "exit":
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == expect[1], status
    else:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == expect[1], status


@needs.layer("pid")
def test_killing_the_supervisor_kills_everything_inside() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            namespaces.enter({"mount", "pid"}, Prepared(), set_pdeathsig)
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
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    # Every process of that namespace is gone: no process on the host still holds the pipe's write end.
    assert os.read(r, 100) == b""
    os.close(r)


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

    from polyfn.sandbox import linux, mounts  # noqa: F401

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
