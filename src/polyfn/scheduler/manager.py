"""The node's instance manager: owns the zygote and the cgroup base, starts instances for pools, routes
process exits back to their instances, and runs the keep-alive reaper.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time

from polyfn.config import Settings
from polyfn.model import Revision
from polyfn.runtimes.python.instance import InstanceSpec
from polyfn.sandbox.cgroups import CgroupBase
from polyfn.sandbox.plan import SandboxPlan, cgroup_dir_for
from polyfn.scheduler import launcher as _launcher
from polyfn.scheduler.instance import Instance, State
from polyfn.scheduler.pool import Pool
from polyfn.scheduler.zygote import ZygoteClient

log = logging.getLogger("polyfn.manager")


class InstanceManager:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.zygote = ZygoteClient("python", settings.run_dir / "zygote-python.log", self._on_exit)
        self.launcher = _launcher.Launcher(self._on_exit, settings.node_blanks)  # runtimes without a zygote
        self.cgroups: CgroupBase | None = None
        self.isolation = "rlimits only"
        self._by_pid: dict[int, Instance] = {}
        self._early_exits: dict[int, int] = {}
        self._ids = itertools.count(1)
        self.pools: set[Pool] = set()
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.settings.cgroups and os.geteuid() == 0:
            base, why = CgroupBase.detect(f"polyfn-{os.getpid()}")
            self.cgroups = base
            self.isolation = why if base else f"rlimits only ({why})"
        elif not self.settings.cgroups:
            self.isolation = "rlimits only (cgroups disabled by configuration)"
        else:
            self.isolation = "rlimits only (not root: no cgroup memory limit)"
        log.info("instance isolation: %s", self.isolation)
        if self.cgroups is not None:
            self.zygote.env = {"POLYFN_CGROUP_BASE": str(self.cgroups.memory),
                               "POLYFN_CGROUP_VERSION": str(self.cgroups.version)}
        await self.zygote.start()
        self._reaper = asyncio.create_task(self._reap_loop())

    def new_pool(self, revision: Revision) -> Pool:
        pool = Pool(revision, self, self.settings.max_queue, self.settings.keepalive)
        self.pools.add(pool)
        pool.ensure_min()
        return pool

    def forget_pool(self, pool: Pool) -> None:
        self.pools.discard(pool)

    async def start_instance(self, pool: Pool) -> Instance:
        """Fork a new instance for `pool` and wait until it is ready (or raise why it is not)."""
        rev = pool.revision
        spec = rev.spec
        iid = f"{rev.function}-{rev.number}-{next(self._ids)}"
        t0 = time.perf_counter()
        inst = Instance(iid, rev.key, pool.on_lost)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        attached = False
        try:
            plan = SandboxPlan(
                memory_mb=spec.memory,
                cgroup_base=str(self.cgroups.memory) if self.cgroups else "",
                cgroup_version=self.cgroups.version if self.cgroups else 0,
            )
            ispec = InstanceSpec(
                instance_id=iid,
                function=rev.function,
                revision=rev.number,
                flavor=spec.flavor,
                handler=spec.handler,
                code_dir=rev.code_dir,
                deps_dir=rev.deps_dir or "",
                concurrency=spec.concurrency,
                memory_mb=spec.memory,
                timeout=spec.timeout,
                env=spec.env,
                sandbox=plan,
                log_line_max=self.settings.log_line_max,
                log_lines_max=self.settings.log_lines_per_activation,
            )
            if spec.runtime == "python":
                ours.setblocking(False)
                await inst.attach(ours)
                attached = True
                pid = await self.zygote.spawn(ispec, theirs)
            else:  # launched (node, http); a pre-started blank brings its own connection
                pid, conn = _launcher.launch_instance(self.launcher, self.settings, rev, ispec, plan, theirs)
                inst.pid = pid
                if conn is not None:
                    ours.close()
                    ours = conn
                ours.setblocking(False)
                await inst.attach(ours)
                attached = True
        except BaseException:
            inst.kill("spawn failed")
            if not attached:
                ours.close()
            raise
        finally:
            theirs.close()
        inst.pid = pid
        self._by_pid[pid] = inst
        if pid in self._early_exits:
            self._on_exit(pid, self._early_exits.pop(pid))
        await inst.wait_ready(min(self.settings.init_timeout, max(spec.timeout, 1.0)))
        inst.init_ms = (time.perf_counter() - t0) * 1000
        return inst

    def _on_exit(self, pid: int, status: int) -> None:
        inst = self._by_pid.pop(pid, None)
        if inst is None:
            self._early_exits[pid] = status
            if len(self._early_exits) > 10000:  # never grows without bound
                self._early_exits.clear()
            return
        oom = False
        if self.cgroups is not None:
            d = cgroup_dir_for(str(self.cgroups.memory), pid)
            oom = self.cgroups.was_oom_killed(d)
            self.cgroups.remove(d)
        inst.exited(status, oom)
        if inst.state is not State.DEAD:
            inst.kill("process exited")

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for pool in list(self.pools):
                pool.reap(now)

    def live_pids(self) -> list[int]:
        return list(self._by_pid)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop every instance, then the zygote; wait (bounded) until the processes are gone."""
        if self._reaper:
            self._reaper.cancel()
        for pool in list(self.pools):
            for inst in list(pool.instances):
                inst.kill("server shutting down")
        for inst in list(self._by_pid.values()):
            inst.kill("server shutting down")
        deadline = time.monotonic() + timeout
        while self._by_pid and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.zygote.stop()
        self.launcher.stop()
        if self.cgroups is not None:
            self.cgroups.remove_base()


