"""The launcher for zygote-less runtimes: exit statuses reach on_exit, the sandbox is applied before exec."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from polyfn.instances.launcher import Launcher, api_url
from polyfn.sandbox.cgroups import CgroupBase
from polyfn.sandbox.plan import SandboxPlan, cgroup_dir_for

from .. import needs


async def run(argv: list[str], plan: SandboxPlan | None = None, tmp: Path | None = None) -> tuple[int, int, str]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, int]] = loop.create_future()
    launcher = Launcher(lambda pid, status: done.set_result((pid, status)))
    ours, theirs = socket.socketpair()
    try:
        pid = launcher.launch(argv, dict(os.environ), str(tmp or "/"), theirs, plan)
        theirs.close()
        ours.settimeout(10)
        data = await loop.run_in_executor(None, ours.recv, 65536)
        got_pid, status = await asyncio.wait_for(done, 10)
        assert got_pid == pid
        return pid, status, data.decode()
    finally:
        ours.close()


PROBE = r"""
import os, socket, sys
s = socket.socket(fileno=int(os.environ["POLYFN_FD"]))
limits = open("/proc/self/limits").read()
cg = open("/proc/self/cgroup").read()
s.sendall((limits + "\n---\n" + cg).encode())
code = int(sys.argv[1])
if code < 0:
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


async def test_exit_code_and_signal_reach_on_exit() -> None:
    _, status, _ = await run([sys.executable, "-c", PROBE, "3"])
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
    _, status, _ = await run([sys.executable, "-c", PROBE, "-9"])
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9


async def test_rlimits_applied_before_exec() -> None:
    _, _, out = await run([sys.executable, "-c", PROBE, "0"], SandboxPlan(memory_mb=64, nofile=77, fsize_mb=5))
    limits = out.split("\n---\n")[0]
    assert any(line.startswith("Max open files") and " 77 " in line for line in limits.splitlines())
    assert any(line.startswith("Max file size") and str(5 * 1024 * 1024) in line for line in limits.splitlines())
    assert any(line.startswith("Max core file size") and " 0 " in line for line in limits.splitlines())


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
async def test_joins_its_own_memory_cgroup() -> None:
    base, why = CgroupBase.detect(f"polyfn-test-{os.getpid()}")
    if base is None:
        needs.missing(why)
    try:
        plan = SandboxPlan(memory_mb=64, cgroup_base=str(base.memory), cgroup_version=base.version)
        pid, _, out = await run([sys.executable, "-c", PROBE, "0"], plan)
        d = Path(cgroup_dir_for(str(base.memory), pid))
        assert d.name in out.split("\n---\n")[1]
        limit = (d / ("memory.limit_in_bytes" if base.version == 1 else "memory.max")).read_text().strip()
        assert int(limit) == 64 * 1024 * 1024
        base.remove(str(d))
    finally:
        base.remove_base()


def test_api_url() -> None:
    class S:
        host, port = "0.0.0.0", 8080

    assert api_url(S) == "http://127.0.0.1:8080"
    S.host = "::"
    assert api_url(S) == "http://[::1]:8080"


def test_a_pre_started_node_blank_found_dead_is_replaced(tmp_path: Path) -> None:
    """A blank that died while it waited (taken before its exit was reaped) must not fail the cold start:
    the function gets a process started now, and that one receives the plan and the spec frame."""
    from types import SimpleNamespace

    from polyfn.instances.launcher import Blank, _launch_node

    def pair() -> tuple[Blank, socket.socket, socket.socket]:
        ours, theirs = socket.socketpair()
        ctrl, ctrl_theirs = socket.socketpair()
        return Blank(0, ours, ctrl), theirs, ctrl_theirs

    class Launcher_:
        def refill(self, key: object, make: object, delay: float = 0.05) -> None:
            pass

        def take_blank(self, key: object) -> Blank:
            dead, theirs, ctrl_theirs = pair()
            dead.pid = 111
            theirs.close()  # the process is gone: its ends are closed
            ctrl_theirs.close()
            return dead

        def start_blank(self, *args: object) -> Blank:
            blank, self.theirs, self.ctrl_theirs = pair()
            blank.pid = 222
            return blank

    launcher = Launcher_()
    plan = SandboxPlan(memory_mb=128)
    pid, sock = _launch_node(launcher, SimpleNamespace(memory=128), plan, {"function": "f"}, {}, {}, [],  # type: ignore[arg-type]
                             tmp_path / "node.log")
    assert pid == 222
    plan_frame = launcher.ctrl_theirs.recv(65536)
    assert int.from_bytes(plan_frame[:4], "big") == len(plan_frame) - 4
    spec_frame = launcher.theirs.recv(65536)
    assert spec_frame[4:] == b'{"function": "f"}'
    sock.close()
