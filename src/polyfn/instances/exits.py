"""Process exits, routed to their instances. The zygotes and the launcher report each exit by host pid
(`on_exit`), a function zygote each of its forks' (`on_zygote_child_exit`); the exit releases what the process
held (its relayed listeners, its CPU weight, its cgroups), says whether the cgroup's OOM killer ended it, and
names the call a seccomp refusal killed a Node or `http` instance for (from the kernel's audit record). An
exit reported before its start registered the pid is kept until it is (`track`).
"""

from __future__ import annotations

import asyncio
import os
import signal

from polyfn.instances.cpushare import CpuShares
from polyfn.instances.fnzygote import FunctionZygote, FunctionZygotes, oom_kills
from polyfn.instances.instance import Instance, State
from polyfn.instances.sandboxing import NodeSandbox
from polyfn.sandbox.plan import cgroup_dir_for

EXIT_GRACE = 0.1  # seconds between an instance's exit report and closing its connection if EOF has not


def _kill_if_open(inst: Instance) -> None:
    if inst.state is not State.DEAD:
        inst.kill("process exited")


def ended(inst: Instance, status: int, oom: bool) -> None:
    inst.exited(status, oom)
    if inst.state is not State.DEAD:
        # Not at once: the exit report and the instance's last frames (an InitError sent just before it
        # exited, a Result) arrive on different sockets, and killing now would drop frames still unread
        # on the connection (the caller then saw "Runtime.StartFailed" instead of its import error). A
        # dead process's end of the connection is closed, so EOF normally ends it first; the kill is the
        # safety net for a connection something else still holds open.
        asyncio.get_running_loop().call_later(EXIT_GRACE, _kill_if_open, inst)


class Exits:
    """The node's instance processes by host pid (`by_pid`)."""

    def __init__(self, sandbox: NodeSandbox, cpu: CpuShares, fzs: FunctionZygotes | None):
        self.sandbox = sandbox
        self.cpu = cpu
        self.fzs = fzs
        self.by_pid: dict[int, Instance] = {}
        self._early: dict[int, int] = {}

    def track(self, pid: int, inst: Instance | None = None) -> None:
        """Process `pid` started (as `inst`; None: a function zygote's supervisor): an exit already reported
        for it is delivered now."""
        if inst is not None:
            self.by_pid[pid] = inst
        if pid in self._early:
            self.on_exit(pid, self._early.pop(pid))

    def on_zygote_child_exit(self, pid: int, status: int, fz: FunctionZygote) -> None:
        """An instance forked by a function zygote ended (reported by that zygote, mapped to the host pid).
        It shares the zygote's cgroup: an OOM kill shows as a new `oom_kill` in that cgroup."""
        inst = self.by_pid.pop(pid, None)
        if inst is None:
            return
        oom = False
        cg = self.sandbox.cgroups
        if cg is not None:
            n = oom_kills(cgroup_dir_for(str(cg.memory), fz.supervisor), cg.version)
            oom, fz.oom_seen = n > fz.oom_seen, max(n, fz.oom_seen)
        ended(inst, status, oom)

    def on_exit(self, pid: int, status: int) -> None:
        sandbox = self.sandbox
        if sandbox.relay is not None:  # an instance's (or a function zygote's) relayed listeners, if any
            sandbox.relay.release(pid)
        self.cpu.leave(pid)
        cg = sandbox.cgroups
        if self.fzs is not None and self.fzs.supervisor_exited(pid):
            if cg is not None:
                cg.remove_all(pid)
            return
        inst = self.by_pid.pop(pid, None)
        if inst is None:
            self._early[pid] = status
            if len(self._early) > 10000:  # never grows without bound
                self._early.clear()
            return
        oom = False
        if cg is not None:
            oom = cg.was_oom_killed(cgroup_dir_for(str(cg.memory), pid))
            cg.remove_all(pid)
        if (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS and not inst.fault
                and sandbox.seccomp_log is not None and inst.uid):
            asyncio.get_running_loop().create_task(self._name_refusal(inst, status, oom))
            return
        ended(inst, status, oom)

    async def _name_refusal(self, inst: Instance, status: int, oom: bool) -> None:
        """A Node or `http` instance killed by the seccomp filter: the kernel's record names the call. The
        kernel's audit thread prints it a moment after the kill, so the exit is reported once it is read
        (or after 300 ms without it: the error then only says SIGSYS)."""
        from polyfn.sandbox import seccomp

        log = self.sandbox.seccomp_log
        assert log is not None
        for _ in range(30):
            nr = log.refused(inst.uid)
            if nr is not None:
                inst.fault = seccomp.refusal(nr)
                break
            await asyncio.sleep(0.01)
        ended(inst, status, oom)
