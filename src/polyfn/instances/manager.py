"""The node's instance manager: owns the zygote and the launcher, starts instances for pools (a clean start, or
a fork of the revision's function zygote) and keeps the pools the ticker visits (`awake`; the ticker itself is
scheduler/ticker.py). What an instance gets is decided by its parts: the node's sandbox (sandboxing.py), each
start's spec (specs.py); process exits go through exits.py, room through budget.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec

from polyfn.config import Settings
from polyfn.instances import fnstart
from polyfn.instances import launcher as _launcher
from polyfn.instances.budget import MemoryBudget
from polyfn.instances.cpushare import CpuShares
from polyfn.instances.exits import Exits
from polyfn.instances.fnzygote import FunctionZygote, FunctionZygotes
from polyfn.instances.instance import Instance, InstanceGone
from polyfn.instances.pkgzygote import PackageZygotes
from polyfn.instances.sandboxing import NodeSandbox
from polyfn.instances.specs import SECRETS_DIR, InstanceSpecs
from polyfn.instances.zygote import ZygoteClient
from polyfn.sandbox import cgroups
from polyfn.sandbox.plan import cgroup_dir_for
from polyfn.tenancy import namespace_of, qualify

log = logging.getLogger("polyfn.manager")


class InstanceManager:
    """Implements what a pool needs (`Starter`, scheduler/starts.py) structurally: its parts are the sandbox
    (sandboxing.py), each start's spec (specs.py), process exits (exits.py) and the memory budget (budget.py); it
    starts instances through the Python zygote, a function zygote or the launcher.
    Pools are made by the registry (scheduler/registry.py) and handed over (`add_pool`); this package reads them
    without importing the scheduling side (a `pool` here is a scheduler.pool.Pool)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sandbox = NodeSandbox(settings)  # the layers this node uses, each revision's plan
        self.fzs: FunctionZygotes | None = FunctionZygotes(self) if settings.function_zygotes else None
        self.cpu = CpuShares(self._write_cpu_weight)  # each function's CPU weight over its cgroups
        self.exits = Exits(self.sandbox, self.cpu, self.fzs)  # the node's instance processes by pid
        #: each start's InstanceSpec: environment (`instance_env`, `env_hook`), secrets (`secret_source`), plan
        self.specs = InstanceSpecs(settings, self.sandbox)
        self.zygote = ZygoteClient("python", settings.run_dir / "zygote-python.log", self.exits.on_exit)
        self.pkzs = PackageZygotes(self)  # clean starts of a dependency layer's revisions (pkgzygote.py)
        self.launcher = _launcher.Launcher(self.exits.on_exit, settings.node_blanks)  # runtimes without a zygote
        self._ids = itertools.count(1)
        self.pools: set[Any] = set()
        #: the pools the ticker visits: every pool that may not be `dormant` (a superset). A pool joins when it
        #: asks for room to start an instance (`reserve`: every start, pre-warm, minimum and waiting caller goes
        #: through it) and leaves when the ticker finds it dormant; a pool with instances or starts is always in
        #: it, so the memory budget sums and evicts over it too. A node of 10,000 functions, most of them idle,
        #: pays per second and per start for the live ones only.
        self.awake: set[Any] = set()
        self.budget = MemoryBudget(settings, self.awake, self.fzs)
        self.metrics: Any = None  # polyfn.observe.metrics.Metrics, set by the node
        #: functions whose callers wait or were refused lately, by name → their pool (scheduler/shed.py): the
        #: HTTP protocol asks the pool before each of their calls (`Pool.admits`) and refuses before any work
        self.shedding: dict[str, Any] = {}
        #: asked before each start: a refusal (refusals.Throttled) when the function's namespace is at its
        #: instances or memory quota, else None (quotas.py; set by the Node)
        self.quota_room: Callable[[Any], Any] | None = None
        self.prepare_env: dict[str, str] = {}

    async def start(self) -> None:
        await self.sandbox.decide()
        log.info("instance isolation: %s", self.sandbox.isolation)
        self.prepare_env, self.zygote.env = self.sandbox.blank_env()  # (prepare_env: for launched instances)
        if "mount" in self.sandbox.namespaces:  # mount point for /run/secrets tmpfs (an empty directory on the host)
            try:
                os.makedirs(SECRETS_DIR, mode=0o755, exist_ok=True)
            except OSError as e:
                log.warning("cannot create %s (%s): secrets as files will not work", SECRETS_DIR, e)
        await self.zygote.start()
        if self.metrics is not None:
            self._register_metrics(self.metrics)

    def _register_metrics(self, metrics: Any) -> None:
        """Autoscaler gauges, read at scrape time (docs/observability.md)."""
        metrics.live_pools = lambda: list(self.awake)  # (the instance sampler: pools with instances are awake)

        def decisions(field: str) -> dict[tuple[str, ...], float]:
            return {(p.revision.function,): float(getattr(p.decision, field))
                    for p in list(self.pools) if p.decision is not None and not p.draining}

        metrics.gauge("polyfn_autoscaler_desired_instances", "The autoscaler's last desired instance count.",
                      ("function",), lambda: decisions("desired"))
        metrics.gauge("polyfn_autoscaler_panic", "1 while the function's autoscaler is in panic mode.",
                      ("function",), lambda: decisions("panic"))
        metrics.gauge("polyfn_instance_evictions", "Idle instances evicted for the node's memory budget "
                      "(since the function's current revision was activated).", ("function",),
                      lambda: {(p.revision.function,): float(p.evictions) for p in list(self.pools)
                               if not p.draining})
        metrics.gauge("polyfn_memory_budget_used_ratio", "Reserved instance memory / the node's memory budget.",
                      (), lambda: {(): self.reserved_mb() / max(1, self.memory_budget_mb)})

    def add_pool(self, pool: Any) -> None:
        """A new pool (made by the registry, scheduler/registry.py): the ticker, the memory budget and the
        shutdown see it from now on."""
        self.pools.add(pool)
        self.awake.add(pool)
        self.pkzs.want(pool.revision)  # a deploy brought (or uses) a dependency layer: its package zygote

    def succeed(self, old: Any, new: Any) -> None:
        """`new`'s revision replaces `old`'s (a deploy). If this node was serving the old one (its function
        zygote, or instances), build the new one's zygote now rather than after its first clean start: that
        first start (and the burst that may follow it) then forks from it, or waits for it if it comes before
        the build is done (`FunctionZygotes.wait_built`). Memory: the old revision's zygote goes when its pool
        has drained; until then both exist."""
        if self.fzs is None or new.revision.spec.runtime != "python":
            return
        if self.fzs.get(old.revision.key) is not None or old.instances:
            self.fzs.want(new, delay=0)

    async def built_at_deploy(self, rev: Any, timeout: float) -> float | None:
        """Wait (at most `timeout` s) for the function zygote `succeed` started building for revision `rev`;
        its import time in ms, or None when no build was under way or it failed. The deploy waits here so the
        revision's first call forks from the zygote instead of waiting for the module's import. The zygote's
        first offered child is named now and its cgroup sized for its first instance, off that call's path;
        the deploy then waits for the child's `Ready` too (`first_offer_ready`)."""
        if self.fzs is None or timeout <= 0 or rev.key not in self.fzs.building:
            return None
        fz = await self.fzs.wait_built(rev.key, timeout)
        if fz is None:
            return None
        fnstart.size_ahead(self, fz, rev.function, rev.spec.memory)
        fz.name_offer()
        return fz.import_ms

    async def first_offer_ready(self, rev: Any, timeout: float) -> None:
        """The deploy's last wait (at most `timeout` s): until the first offered child of `rev`'s zygote built
        at deploy has answered `Ready` — rehearsed and named, as idle as a warm instance — so the revision's
        first call does not run beside its fork and rehearsal. (Routed already: a call that comes first takes
        the child before its `Ready`, pipelined, as before.)"""
        fz = self.fzs.get(rev.key) if self.fzs is not None else None
        if fz is not None and timeout > 0:
            await fz.offer_ready(timeout)

    def forget_pool(self, pool: Any, keep_revision: bool = False) -> None:
        """A drained pool is gone; its revision's sandbox and zygote go too unless another pool serves it."""
        self.pools.discard(pool)
        self.awake.discard(pool)
        if keep_revision:
            return
        self.sandbox.forget(pool.revision)
        if self.fzs is not None:
            self.fzs.drop(pool.revision.key)
        self.pkzs.release(pool.revision, self.pools)

    # --- node memory budget ----------------------------------------------------------------------------

    @property
    def memory_budget_mb(self) -> int:
        return self.budget.budget_mb

    def reserved_mb(self) -> int:
        """Memory promised to instances (budget.py): each live (ready or starting) instance reserves its `memory`."""
        return self.budget.reserved_mb()

    def reserve(self, pool: Any) -> bool:
        """Room for one more instance of `pool`: within its namespace's quotas (quotas.py; a refusal is left in
        `pool.refusal`), then in the node's memory budget (budget.py: evicting idle instances if need be)."""
        if pool in self.pools:  # (a forgotten pool's late start does not come back to the ticker)
            self.awake.add(pool)
        if self.quota_room is not None:
            refused = self.quota_room(pool)
            if refused is not None:
                pool.refusal = refused
                return False
        return self.budget.reserve(pool)

    def _write_cpu_weight(self, pid: int, shares: int) -> None:
        if self.sandbox.cgroups is not None:
            cgroups.set_cpu_weight(self.sandbox.cgroups.dirs_for(pid), self.sandbox.cgroups.version, shares)

    def start_now(self, pool: Any) -> Instance | None:
        """A start of `pool` that needs no wait, made in the caller's turn of the loop: its revision's function
        zygote's offered child, whose handle was made as the offer came (`fnstart.take_now`). None otherwise:
        the pool then starts one in a task (`start_instance`)."""
        rev = pool.revision
        fz = self.fzs.get(rev.key) if self.fzs is not None and rev.spec.runtime == "python" else None
        if fz is None or fz.offer is None or fz.plan is None:
            return None
        iid = fz.named or f"{rev.function}-{rev.number}-{next(self._ids)}"  # (named as the offer came, mostly)
        return fnstart.take_now(self, fz, pool, iid, time.perf_counter())

    async def start_instance(self, pool: Any) -> Instance:
        """Fork a new instance for `pool` and wait until it is ready (or raise why it is not)."""
        rev = pool.revision
        spec = rev.spec
        iid = f"{rev.function}-{rev.number}-{next(self._ids)}"
        t0 = time.perf_counter()
        fz = self.fzs.get(rev.key) if self.fzs is not None and spec.runtime == "python" else None
        if fz is None and self.fzs is not None and spec.runtime == "python":
            if pool.starting > 1:  # a burst on a revision without a zygote: one import, and every start forks
                self.fzs.want(pool, delay=0)
            if rev.key in self.fzs.building:
                fz = await self.fzs.wait_built(rev.key, min(self.settings.init_timeout, max(spec.timeout, 1.0)))
        if fz is not None and fz.offer is not None and fz.plan is not None:
            taken = await fnstart.take_offer(self, fz, pool, iid, t0)
            if taken is not None:
                return taken
        inst = Instance(iid, rev.key, pool.on_lost)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        attached = False
        try:
            ispec, plan = await self.specs.build(rev, iid)
            inst.uid = plan.uid
            if fz is not None:
                pid = await fnstart.spawn_from_zygote(self, fz, ispec, theirs, ours)
                if pid:
                    ours.setblocking(False)
                    await inst.attach(ours)
                    attached = True
                else:  # the zygote failed us: a clean start, on a fresh connection (its child may hold theirs)
                    ours.close()
                    theirs.close()
                    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                    fz = None
            if fz is not None:
                pass
            elif spec.runtime == "python":
                ours.setblocking(False)
                await inst.attach(ours)
                attached = True
                pid, packaged = await self.pkzs.spawn(rev, ispec, theirs)
            else:  # launched (node, http); a pre-started blank brings its own connection
                pid, conn = _launcher.launch_instance(self.launcher, self.settings, rev, ispec, plan, theirs,
                                                      self.prepare_env, self.specs.relay_urls)
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
        if self.sandbox.cgroups is not None:  # a function zygote's forks share its cgroup
            inst.memory = cgroups.MemoryGauge(cgroup_dir_for(str(self.sandbox.cgroups.memory), fz.supervisor if fz else pid),
                                              self.sandbox.cgroups.version)
        self.exits.track(pid, inst)
        try:
            await inst.wait_ready(min(self.settings.init_timeout, max(spec.timeout, 1.0)))
        except InstanceGone:
            # Say how the process ended (its exit code; a signal, e.g. SIGSYS from the seccomp filter), not
            # only that its connection closed: a start that dies without an init error leaves no other trace.
            await inst.wait_exit(0.5)
            raise InstanceGone(inst.describe_exit()) from None
        inst.init_ms = (time.perf_counter() - t0) * 1000
        if self.sandbox.cgroups is not None:  # the function's CPU weight, re-split with this instance's cgroup
            self.cpu.join(rev.function, spec.memory, fz.supervisor if fz is not None else pid)
        if fz is None and spec.runtime == "python" and self.fzs is not None:
            why = self.fzs.failed.get(rev.key)
            inst.info += f"; zygote: none ({why})" if why else "; zygote: package" if packaged else "; zygote: runtime"
            self.fzs.want(pool)
        return inst

    def secret_changed(self, name: str) -> int:
        """Secret `name` was set or deleted: drop the function zygotes of revisions that use it (their forks
        would keep the value the zygote was built with; the next clean start reads the new one and builds a
        new zygote). Running instances keep their value until they are replaced, as after any change."""
        if self.fzs is None:
            return 0
        dropped = 0
        for p in list(self.pools):
            ns = namespace_of(p.revision.function)  # (`name` is held: NS~NAME outside `default`)
            if p.revision.key in self.fzs.ready and any(qualify(ns, e.partition(":")[0]) == name
                                                        for e in p.revision.spec.secrets):
                self.fzs.drop(p.revision.key)
                dropped += 1
        return dropped

    async def start_function_zygote(self, pool: Any, registry: FunctionZygotes) -> FunctionZygote:
        """Ask the runtime zygote for `pool`'s function zygote (an instance with `zygote=True` whose
        connection is a SEQPACKET control channel). Returns it before it is ready."""
        rev = pool.revision
        ispec, _plan = await self.specs.build(rev, f"{rev.function}-{rev.number}-zygote")
        ispec.zygote = True
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sup, _ = await self.pkzs.spawn(rev, ispec, theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        fz = FunctionZygote(rev.key, ours, sup, registry.lost, self.exits.on_zygote_child_exit)
        fz.plan = msgspec.structs.replace(_plan, secret_files={})  # (its uid and limits; no secret kept)
        fz.on_offer = lambda conn: fnstart.prepare(self, fz, conn)
        fz.name_instance = lambda: f"{rev.function}-{rev.number}-{next(self._ids)}"
        registry.by_supervisor[sup] = fz
        if self.sandbox.cgroups is not None:
            self.cpu.join(rev.function, rev.spec.memory, sup)
        self.exits.track(sup)
        return fz

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop every instance, then the zygote; wait (bounded) until the processes are gone."""
        for pool in list(self.pools):
            for inst in list(pool.instances):
                inst.kill("server shutting down")
        for inst in list(self.exits.by_pid.values()):
            inst.kill("server shutting down")
        deadline = time.monotonic() + timeout
        # Until every process is gone: by its exit report, or by its pid (an instance whose exit its function
        # zygote never reported stays in `_by_pid`, and cost every stop the whole timeout)
        while any(_alive(pid) for pid in self.exits.by_pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.fzs is not None:
            self.fzs.stop()
        self.pkzs.stop()
        self.zygote.stop()
        self.launcher.stop()
        if self.sandbox.cgroups is not None:
            self.sandbox.cgroups.remove_base()


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie not yet reaped counts as alive: its parent reports it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
