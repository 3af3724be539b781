"""The node's instance manager: owns the zygote and the cgroup base, starts instances for pools, routes
process exits back to their instances, and runs the keep-alive reaper.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from polyfn.config import Settings
from polyfn.loops import one_item
from polyfn.model import Revision
from polyfn.runtimes import dotnet
from polyfn.runtimes.python.instance import PROVIDED_DIR, InstanceSpec
from polyfn.sandbox import cgroups, probe, rootfs
from polyfn.sandbox.auditlog import SeccompLog
from polyfn.sandbox.cgroups import CgroupBase
from polyfn.sandbox.plan import SandboxPlan, cgroup_dir_for
from polyfn.scheduler import decisions
from polyfn.scheduler import launcher as _launcher
from polyfn.scheduler.cpushare import CpuShares
from polyfn.scheduler.fnzygote import FunctionZygote, FunctionZygotes, oom_kills
from polyfn.scheduler.instance import InitFailed, Instance, InstanceGone, State
from polyfn.scheduler.pool import Pool
from polyfn.scheduler.zygote import ZygoteClient, ZygoteError
from polyfn.tenancy import DEFAULT, local, namespace_of, qualify

log = logging.getLogger("polyfn.manager")
SECRETS_DIR = "/run/secrets"


EXIT_GRACE = 0.1  # seconds between an instance's exit report and closing its connection if EOF has not


def _kill_if_open(inst: Instance) -> None:
    if inst.state is not State.DEAD:
        inst.kill("process exited")



def dormant(pool: Pool) -> bool:
    """Nothing for the autoscaler or the reaper to do: no instance, none starting, no caller, no minimum, no
    pre-warm planned or possible, and the autoscaler never ran (a pool never used) or settled at zero. Such a
    pool's tick would decide 0 and close nothing; skipping it keeps the once-a-second tick proportional to the
    functions in use, not to those deployed."""
    if pool.instances or pool.starting or pool.waiters or pool.busy or pool.min_instances or pool.prewarm_at \
            or pool.draining or pool._shedding:
        return False
    if pool.last_end == 0.0:
        return True
    d = pool.decision
    return d is not None and d.valid and d.desired == 0 and pool.policy.window().prewarm == 0

class InstanceManager:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.zygote = ZygoteClient("python", settings.run_dir / "zygote-python.log", self._on_exit)
        self.launcher = _launcher.Launcher(self._on_exit, settings.node_blanks)  # runtimes without a zygote
        self.fzs: FunctionZygotes | None = FunctionZygotes(self) if settings.function_zygotes else None
        self.cgroups: CgroupBase | None = None
        self.isolation = "rlimits only"
        self.namespaces: set[str] = set()
        self.drop_uid = False
        self.seccomp = False
        self.seccomp_log: SeccompLog | None = None  # names the call a Node/http instance was killed for
        self.probe: dict[str, str] = {}
        self._uids: dict[str, int] = {}
        self._expose: tuple[list[str], list[str]] = ([], [])
        #: the root filesystem layer (sandbox/rootfs.py): shared paths per runtime, masked site-packages
        self.rootfs = False
        self._root: dict[str, list[str]] = {}
        self._root_mask: list[str] = []
        #: a Python function's import path after its own code: stdlib + provided packages (never the server's)
        self.py_sys_path: list[str] = []
        #: network kinds this node can enforce: namespaces at all (else every function is on the host
        #: network), and `egress` (veth + the nftables table; else `egress` functions get `polyfn`)
        self.net_ok = False
        self.egress = False
        self.network_note = ""
        self._allow: dict[tuple[str, ...], list[str]] = {}
        self._egress_script = ""  # the nftables ruleset installed at start (sandbox/egress.py)
        self._groups: set[int] = set()  # interface groups whose allow-list ranges are in the set
        self._plans: dict[tuple[str, float, str], SandboxPlan] = {}  # per revision (see `sandbox_plan`)
        self.secret_source: Any = None  # async (names) -> {name: value}; set by the Node
        self._by_pid: dict[int, Instance] = {}
        self._early_exits: dict[int, int] = {}
        self._ids = itertools.count(1)
        self.pools: set[Pool] = set()
        self._reaper: asyncio.Task[None] | None = None
        self.instance_env: dict[str, str] = {}  # node-wide environment for every instance (set before start)
        self.metrics: Any = None  # polyfn.observe.metrics.Metrics, set by the node
        #: functions whose callers wait or were refused lately, by name → their pool (scheduler/shed.py): the
        #: HTTP protocol asks the pool before each of their calls (`Pool.admits`) and refuses before any work
        self.shedding: dict[str, Pool] = {}
        self.cpu = CpuShares(self._write_cpu_weight)  # each function's CPU weight over its cgroups
        #: Extra environment for a function's instances (e.g. the object store's AWS_* credentials);
        #: the function's own `env` wins over it.
        self.env_hook: Callable[[str], Awaitable[dict[str, str]]] | None = None
        #: asked before each start: a refusal (pool.Throttled) when the function's namespace is at its instances
        #: or memory quota, else None (quotas.py; set by the Node)
        self.quota_room: Callable[[Any], Any] | None = None
        #: `network: polyfn` (sandbox/relay.py): the server's relay, set by the node before `start`;
        #: `relay_urls` maps each endpoint's URL as the node announces it to the one inside the instance.
        self.relay: Any = None
        self.relay_urls: dict[str, str] = {}
        self.prepare_env: dict[str, str] = {}

    async def start(self) -> None:
        await self._decide_isolation()
        log.info("instance isolation: %s", self.isolation)
        s = self.settings
        env = {"POLYFN_SANDBOX_NS": ",".join(sorted(self.namespaces))}
        if self.cgroups is not None:
            env.update({"POLYFN_CGROUP_BASE": str(self.cgroups.memory),
                        "POLYFN_CGROUP_EXTRA": ",".join(f"{k}={v}" for k, v in self.cgroups.extra.items()),
                        "POLYFN_CGROUP_VERSION": str(self.cgroups.version),
                        # blanks preset the limits of a default-memory function (same values as sandbox_plan)
                        "POLYFN_CGROUP_PRESET": f"{s.default_memory},{s.pids_max},{max(2, s.default_memory)},"
                                                f"{s.cpu_quota}"})
        env["POLYFN_ZYGOTE_VENDORS"] = "1" if self.settings.zygote_vendor_preload else "0"
        if self.egress and "net" in self.namespaces:  # blanks make the default network's veth off the cold path
            env["POLYFN_SANDBOX_EGRESS"] = "1"
        self.zygote.env = env
        self.prepare_env = env  # what `sandbox.prepare` reads in launched (node, http) instances too
        if self.rootfs and "mount" in self.namespaces:  # Python blanks build the shared root off the cold path
            import json

            self.zygote.env = {**env, "POLYFN_SANDBOX_ROOT": json.dumps(
                {"root": self._root["python"], "mask": self._root_mask, "tmp_mb": s.tmp_size})}
        if "mount" in self.namespaces:  # mount point for /run/secrets tmpfs (an empty directory on the host)
            try:
                os.makedirs(SECRETS_DIR, mode=0o755, exist_ok=True)
            except OSError as e:
                log.warning("cannot create %s (%s): secrets as files will not work", SECRETS_DIR, e)
        await self.zygote.start()
        self._reaper = asyncio.create_task(self._reap_loop())
        if self.metrics is not None:
            self._register_metrics(self.metrics)

    def _register_metrics(self, metrics: Any) -> None:
        """Autoscaler gauges, read at scrape time (docs/observability.md)."""

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

    async def _decide_isolation(self) -> None:
        """Probe what the host allows, minus what configuration turns off; build the `isolation` line."""
        off = self.settings.disabled_layers
        parts: list[str] = []
        skipped: list[str] = []
        if "cgroup" in off or not self.settings.cgroups:
            skipped.append("cgroup (disabled by configuration)")
        elif os.geteuid() == 0:
            base, why = CgroupBase.detect(f"polyfn-{os.getpid()}")
            self.cgroups = base
            (parts if base else skipped).append(why if base else f"cgroup ({why})")
        else:
            skipped.append("cgroup (not root)")
        self.probe = await probe.in_subprocess()
        py_binds, self.py_sys_path = await asyncio.to_thread(
            rootfs.python_paths, str(self.settings.data_dir.resolve() / "runtime" / "python-metadata"))
        iso = decisions.decide_isolation(self.probe, off, os.geteuid() == 0)
        self.namespaces |= iso.namespaces
        self.net_ok = iso.net
        if "uid" in iso.layers:
            self.drop_uid = True
            self._expose = rootfs.interpreter_exposure()
        if "root" in iso.layers:
            self.rootfs = True
            self._root = rootfs.runtime_roots(py_binds, PROVIDED_DIR, dotnet.MONO_PATHS)
            self._root_mask = rootfs.site_masks()
        if "seccomp" in iso.layers:
            self.seccomp = True
            self.seccomp_log = SeccompLog.open() if os.geteuid() == 0 else None
        parts += iso.parts
        skipped += iso.skipped
        if "user" in iso.namespaces:
            parts.insert(0, "user ns (not root)")
        await self._decide_egress(off, parts, skipped)
        parts.append("rlimits")
        self.isolation = " + ".join(parts) + ("; off: " + ", ".join(skipped) if skipped else "")

    async def _decide_egress(self, off: set[str], parts: list[str], skipped: list[str]) -> None:
        """The default network (`egress`): a veth pair per instance under the host's nftables policy
        (sandbox/egress.py). Degraded modes, said in the isolation line and by `polyfn doctor`."""
        from polyfn.sandbox import egress

        if not self.net_ok:
            self.network_note = ("no network namespaces: every function runs on the host network "
                                 "(`egress` and `host` alike; `polyfn`/`none` fail to start)")
            skipped.append("egress (" + self.network_note + ")")
            return
        why = "disabled by configuration" if "egress" in off else ""
        if not why and "user" in self.namespaces:
            why = "not root"
        st = self.settings
        control = [u for u in (st.database_url, st.queue_url, st.storage_upstream_url, st.artifacts_endpoint,
                               st.otlp_endpoint) if u]
        why = why or egress.unavailable()
        if not why:
            self._egress_script = await asyncio.to_thread(egress.ruleset, control)
            why = await asyncio.to_thread(egress.install, self._egress_script)
        if why:
            self.network_note = (f"egress unavailable ({why}): `egress` functions reach only polyfn's endpoints "
                                 "and their allow-list, not the internet; `--network host` reaches everything")
            skipped.append(f"egress ({why}; such functions get network polyfn)")
            return
        self.egress = True
        parts.append("egress (veth + nftables: the host and private ranges refused)")

    def network_for(self, spec: Any) -> str:
        """The network kind an instance of `spec` really gets here (see `_decide_egress`)."""
        kind = "host" if spec.network == "all" else spec.network
        if not self.net_ok and kind == "egress":
            return "host"
        if kind == "egress" and not self.egress:
            return "polyfn"
        return kind

    def allow_for(self, rev: Revision) -> list[str]:
        """The function's allow-list as IP:PORT (names resolved once per revision), registered with the relay."""
        from polyfn.sandbox import egress

        key = (rev.function, str(rev.number), *rev.spec.allow_net)
        allow = self._allow.get(key)
        if allow is None:
            allow = egress.resolve_allow(rev.spec.allow_net)
            self._allow[key] = allow
        if self.relay is not None:
            for entry in allow:
                host, _, port = entry.rpartition(":")
                self.relay.allowed.add((host, int(port)))
        return allow

    def net_group_for(self, rev: Revision) -> int:
        """The interface group of `rev`'s CIDR allow-list entries (0: none, or no `egress` here). Their set
        elements are added once per server, with the whole ruleset again in the same transaction (a server
        of the host that flushed the chains meanwhile cannot leave the group without its rule). Blocks on
        `nft` (a few ms) the first time a group is seen."""
        from polyfn.sandbox import egress

        if not self.egress or self.network_for(rev.spec) != "egress":
            return 0
        found = egress.ranges(rev.spec.allow_net)
        group = egress.group_for(found)
        if group and group not in self._groups:
            why = egress.apply(self._egress_script + egress.elements(group, found))
            if why:  # the instance starts, and its ranges stay refused (fail closed); the next start retries
                log.error("function %s: its allow-list ranges could not be opened: %s", rev.function, why)
            else:
                self._groups.add(group)
        return group

    def uid_for(self, function: str) -> int:
        """A uid of its own per function (0 when the uid layer is off). Allocated for the node's lifetime:
        nothing an instance writes outlives it (its /tmp is a tmpfs), so the mapping needn't persist."""
        if not self.drop_uid:
            return 0
        uid = self._uids.get(function)
        if uid is None:
            s = self.settings
            uid = s.sandbox_uid_base + len(self._uids) % s.sandbox_uid_count
            self._uids[function] = uid
        return uid

    def sandbox_plan(self, rev: Revision) -> SandboxPlan:
        """The isolation of an instance of `rev`: built once per revision (it depends on nothing else that
        changes while the node runs) and copied per start, so a cold start does not rebuild /etc, resolve
        paths or walk the allow-list. A copy: the caller sets its `secret_files`."""
        key = (rev.key, rev.created_at, rev.code_sha256)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(rev)
            if not (plan.net_group and plan.net_group not in self._groups):  # its ranges failed: retry next start
                if len(self._plans) >= 4096:
                    self._plans.clear()
                self._plans[key] = plan
        return msgspec.structs.replace(plan)

    def _build_plan(self, rev: Revision) -> SandboxPlan:
        s = self.settings
        spec = rev.spec
        mounts = "mount" in self.namespaces
        uid = self.uid_for(rev.function)
        network = self.network_for(spec)
        relayed = network in ("polyfn", "egress")
        tmp = spec.ephemeral_storage or s.tmp_size
        return SandboxPlan(
            memory_mb=spec.memory,
            cgroup_base=str(self.cgroups.memory) if self.cgroups else "",
            cgroup_version=self.cgroups.version if self.cgroups else 0,
            pids_max=s.pids_max,
            nofile=s.open_files,
            fsize_mb=max(s.file_size, tmp),  # one file may fill the function's /tmp
            cpu_shares=max(2, spec.memory),
            cpu_quota=s.cpu_quota,
            uid=uid,
            gid=uid,
            tmp_mb=tmp if mounts else 0,
            hide=[str(s.data_dir.resolve()), *self._expose[0]] if mounts else [],
            binds=[*(d for d in (rev.code_dir, rev.deps_dir) if d), *self._expose[1]] if mounts else [],
            network=network,
            allow=self.allow_for(rev) if relayed else [],
            net_group=self.net_group_for(rev),
            seccomp=spec.runtime if self.seccomp else "",
            relay_socket=str(self.relay.path) if self.relay is not None and relayed else "",
            relay_ports=sorted(self.relay.targets) if self.relay is not None and relayed else [],
            root=self._root.get(spec.runtime, []) if self.rootfs else [],
            root_mask=self._root_mask if self.rootfs else [],
            etc=rootfs.etc_files(uid, uid) if self.rootfs else {},
        )

    def instance_env_for(self, rev: Revision, extra: dict[str, str]) -> dict[str, str]:
        """The environment of an instance of `rev`: node-wide, the hook's (object store), the function's
        own, then `extra` (secrets). With `network: polyfn`, polyfn's endpoint URLs are rewritten to the
        addresses its relay listens on inside the instance's network namespace."""
        env = {**self.instance_env, **extra}
        if self.network_for(rev.spec) in ("polyfn", "egress"):
            for outside, inside in self.relay_urls.items():
                env = {k: v.replace(outside, inside) for k, v in env.items()}
        return env

    def new_pool(self, revision: Revision, keep_min: bool = True) -> Pool:
        """A pool for `revision`; `keep_min=False` (a pinned, non-current revision) keeps no instances warm."""
        pool = Pool(revision, self, self.settings.max_queue, self.settings.keepalive,
                    self.settings.keepalive_policy)
        if not keep_min:
            pool.min_instances = 0
            pool.scaler_config = dataclasses.replace(pool.scaler_config, min_instances=0)
        self.pools.add(pool)
        pool.ensure_min()
        return pool

    def forget_pool(self, pool: Pool) -> None:
        self.pools.discard(pool)
        rev = pool.revision
        self._plans.pop((rev.key, rev.created_at, rev.code_sha256), None)
        if self.fzs is not None:
            self.fzs.drop(pool.revision.key)

    # --- node memory budget ----------------------------------------------------------------------------

    @property
    def memory_budget_mb(self) -> int:
        return self.settings.memory_budget_mb

    def reserved_mb(self) -> int:
        """Memory promised to instances: each live (ready or starting) instance reserves its `memory`."""
        return sum(p.revision.spec.memory * (p.starting + sum(1 for i in p.instances if i.state is State.READY))
                   for p in self.pools if p.instances or p.starting  # (most pools of a big node have none)
                   ) + (self.fzs.reserved_mb() if self.fzs is not None else 0)

    def _write_cpu_weight(self, pid: int, shares: int) -> None:
        if self.cgroups is not None:
            cgroups.set_cpu_weight(self.cgroups.dirs_for(pid), self.cgroups.version, shares)

    def reserve(self, pool: Pool) -> bool:
        """Room for one more instance of `pool`? If not, evict idle instances of other functions, least
        recently used first; False if there still is no room. One function's instances never reserve more
        than `function_memory_share` % of the budget: a function scaling up (or crash-looping through memory)
        cannot take the node, nor evict every other function's warm instances to do so."""
        quota_room = getattr(self, "quota_room", None)  # (managers built without __init__ in tests have none)
        if quota_room is not None:  # the function's namespace's instances and memory quotas (quotas.py)
            refused = quota_room(pool)
            if refused is not None:
                pool.refusal = refused
                return False
        need = pool.revision.spec.memory
        mine = sum(p.revision.spec.memory * (p.starting + sum(1 for i in p.instances if i.state is State.READY))
                   for p in self.pools if p.revision.function == pool.revision.function)
        room = decisions.reserve(need, mine, self.reserved_mb(), self.memory_budget_mb,
                                 self.settings.function_memory_share,
                                 ((i.last_used, p.revision.spec.memory, (i, p)) for p in self.pools if p is not pool
                                  for i in p.idle if i.inflight == 0 and i.state is State.READY))
        if room.refused:
            return False
        for inst, p in room.evict:
            p.evict_one(inst)
        short = room.short
        if short > 0 and self.fzs is not None:  # then the zygotes of functions with nothing in flight
            busy = {p.revision.key for p in self.pools if p.busy or p.starting or p.waiters} | {pool.revision.key}
            short -= self.fzs.evict_idle(short, busy)
        return short <= 0

    async def _instance_spec(self, rev: Revision, iid: str) -> tuple[InstanceSpec, SandboxPlan]:
        spec = rev.spec
        secret_files, secret_env = await self._secrets_for(spec.secrets, namespace_of(rev.function))
        hook_env = await self.env_hook(rev.function) if self.env_hook else {}
        plan = self.sandbox_plan(rev)
        plan.secret_files = secret_files
        ispec = InstanceSpec(
            instance_id=iid,
            function=local(rev.function),  # (its local name: a namespace's function knows itself as `hello`)
            revision=rev.number,
            flavor=spec.flavor,
            handler=spec.handler,
            code_dir=rev.code_dir,
            deps_dir=rev.deps_dir or "",
            concurrency=spec.concurrency,
            memory_mb=spec.memory,
            timeout=spec.timeout,
            env=self.instance_env_for(rev, {**hook_env, **spec.env, **secret_env}),
            sandbox=plan,
            namespaces=sorted(self.namespaces),
            log_line_max=self.settings.log_line_max,
            log_lines_max=self.settings.log_lines_per_activation,
            log_bytes_max=self.settings.log_bytes_per_activation,
            sys_path=self.py_sys_path,
        )
        return ispec, plan

    async def start_instance(self, pool: Pool) -> Instance:
        """Fork a new instance for `pool` and wait until it is ready (or raise why it is not)."""
        rev = pool.revision
        spec = rev.spec
        iid = f"{rev.function}-{rev.number}-{next(self._ids)}"
        t0 = time.perf_counter()
        fz = self.fzs.get(rev.key) if self.fzs is not None and spec.runtime == "python" else None
        inst = Instance(iid, rev.key, pool.on_lost)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        attached = False
        try:
            ispec, plan = await self._instance_spec(rev, iid)
            inst.uid = plan.uid
            if fz is not None:
                pid = await self._spawn_from_zygote(fz, ispec, theirs, ours)
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
                pid = await self.zygote.spawn(ispec, theirs)
            else:  # launched (node, http); a pre-started blank brings its own connection
                pid, conn = _launcher.launch_instance(self.launcher, self.settings, rev, ispec, plan, theirs,
                                                      self.prepare_env, self.relay_urls)
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
        if self.cgroups is not None:  # a function zygote's forks share its cgroup
            inst.memory = cgroups.MemoryGauge(cgroup_dir_for(str(self.cgroups.memory), fz.supervisor if fz else pid),
                                              self.cgroups.version)
        self._by_pid[pid] = inst
        if pid in self._early_exits:
            self._on_exit(pid, self._early_exits.pop(pid))
        try:
            await inst.wait_ready(min(self.settings.init_timeout, max(spec.timeout, 1.0)))
        except InstanceGone:
            # Say how the process ended (its exit code; a signal, e.g. SIGSYS from the seccomp filter), not
            # only that its connection closed: a start that dies without an init error leaves no other trace.
            await inst.wait_exit(0.5)
            raise InstanceGone(inst.describe_exit()) from None
        inst.init_ms = (time.perf_counter() - t0) * 1000
        if self.cgroups is not None:  # the function's CPU weight, re-split with this instance's cgroup
            self.cpu.join(rev.function, spec.memory, fz.supervisor if fz is not None else pid)
        if fz is None and spec.runtime == "python" and self.fzs is not None:
            why = self.fzs.failed.get(rev.key)
            inst.info += f"; zygote: none ({why})" if why else "; zygote: runtime"
            self.fzs.want(pool)
        return inst

    async def _spawn_from_zygote(self, fz: FunctionZygote, ispec: InstanceSpec, theirs: socket.socket,
                                 ours: socket.socket) -> int:
        """Fork the instance from its revision's zygote; its host pid, or 0 if the zygote failed."""
        n = fz.instances + 2  # the zygote, its live instances and this one share the zygote's cgroup
        if self.cgroups is not None and n > fz.high_water:
            plan = ispec.sandbox
            try:
                cgroups.set_limits(self.cgroups.dirs_for(fz.supervisor), self.cgroups.version, plan.memory_mb * n,
                                   plan.pids_max * n, plan.cpu_shares, plan.cpu_quota)
                fz.high_water = n
            except OSError as e:
                log.warning("%s: cannot raise the function zygote's cgroup limits: %s", fz.key, e)
                return 0
        try:
            # the sandbox is the zygote's, in force already: its forks need not decode the plan again
            pid = await fz.spawn(msgspec.structs.replace(ispec, sandbox=None), theirs)
            ours.send(pid.to_bytes(8, "little"))  # the instance's host pid (for POLYFN_HOST_PID)
            return pid
        except (ZygoteError, OSError) as e:
            log.warning("%s: function zygote failed (%s): starting clean", fz.key, e)
            if self.fzs is not None:
                self.fzs.lost(fz)
            fz.kill()
            return 0

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

    async def start_function_zygote(self, pool: Pool, registry: FunctionZygotes) -> FunctionZygote:
        """Ask the runtime zygote for `pool`'s function zygote (an instance with `zygote=True` whose
        connection is a SEQPACKET control channel). Returns it before it is ready."""
        rev = pool.revision
        ispec, _plan = await self._instance_spec(rev, f"{rev.function}-{rev.number}-zygote")
        ispec.zygote = True
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sup = await self.zygote.spawn(ispec, theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        fz = FunctionZygote(rev.key, ours, sup, registry.lost, self._on_zygote_child_exit)
        registry.by_supervisor[sup] = fz
        if self.cgroups is not None:
            self.cpu.join(rev.function, rev.spec.memory, sup)
        if sup in self._early_exits:
            self._on_exit(sup, self._early_exits.pop(sup))
        return fz

    def _on_zygote_child_exit(self, pid: int, status: int, fz: FunctionZygote) -> None:
        """An instance forked by a function zygote ended (reported by that zygote, mapped to the host pid).
        It shares the zygote's cgroup: an OOM kill shows as a new `oom_kill` in that cgroup."""
        inst = self._by_pid.pop(pid, None)
        if inst is None:
            return
        oom = False
        if self.cgroups is not None:
            n = oom_kills(cgroup_dir_for(str(self.cgroups.memory), fz.supervisor), self.cgroups.version)
            oom, fz.oom_seen = n > fz.oom_seen, max(n, fz.oom_seen)
        self._ended(inst, status, oom)

    async def _secrets_for(self, entries: list[str], namespace: str = DEFAULT) -> tuple[dict[str, str], dict[str, str]]:
        """({name: value} for /run/secrets files, {name: value} for env) of a spec's `secrets`, each the
        secret of that name in the function's own namespace (held as NS~NAME: tenancy.py)."""
        if not entries:
            return {}, {}
        names = [e.partition(":")[0] for e in entries]
        try:
            held = await self.secret_source([qualify(namespace, n) for n in names]) if self.secret_source else {}
        except KeyError as e:
            missing = ", ".join(local(n) for n in str(e.args[0]).split(", "))
            raise InitFailed({"errorType": "Runtime.MissingSecret",
                              "errorMessage": f"secret(s) {missing} not found: set them with `polyfn secret set NAME`"},
                             []) from None
        values = {local(k): v for k, v in held.items()}
        files: dict[str, str] = {}
        env: dict[str, str] = {}
        for entry in entries:
            name, _, how = entry.partition(":")
            if how == "env":
                env[name] = values[name]
            else:
                if "mount" not in self.namespaces or not os.path.isdir(SECRETS_DIR):
                    raise InitFailed({"errorType": "Runtime.SecretsUnavailable",
                                      "errorMessage": f"secret {name!r} as a file needs the mount namespace "
                                      f"(isolation here: {self.isolation}); use '{name}:env' instead"}, [])
                files[name] = values[name]
        return files, env

    def _on_exit(self, pid: int, status: int) -> None:
        if self.relay is not None:  # an instance's (or a function zygote's) relayed listeners, if any
            self.relay.release(pid)
        self.cpu.leave(pid)
        if self.fzs is not None and self.fzs.supervisor_exited(pid):
            if self.cgroups is not None:
                self.cgroups.remove_all(pid)
            return
        inst = self._by_pid.pop(pid, None)
        if inst is None:
            self._early_exits[pid] = status
            if len(self._early_exits) > 10000:  # never grows without bound
                self._early_exits.clear()
            return
        oom = False
        if self.cgroups is not None:
            oom = self.cgroups.was_oom_killed(cgroup_dir_for(str(self.cgroups.memory), pid))
            self.cgroups.remove_all(pid)
        if (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS and not inst.fault
                and self.seccomp_log is not None and inst.uid):
            asyncio.get_running_loop().create_task(self._name_refusal(inst, status, oom))
            return
        self._ended(inst, status, oom)

    async def _name_refusal(self, inst: Instance, status: int, oom: bool) -> None:
        """A Node or `http` instance killed by the seccomp filter: the kernel's record names the call. The
        kernel's audit thread prints it a moment after the kill, so the exit is reported once it is read
        (or after 300 ms without it: the error then only says SIGSYS)."""
        from polyfn.sandbox import seccomp

        assert self.seccomp_log is not None
        for _ in range(30):
            nr = self.seccomp_log.refused(inst.uid)
            if nr is not None:
                inst.fault = seccomp.refusal(nr)
                break
            await asyncio.sleep(0.01)
        self._ended(inst, status, oom)

    @staticmethod
    def _ended(inst: Instance, status: int, oom: bool) -> None:
        inst.exited(status, oom)
        if inst.state is not State.DEAD:
            # Not at once: the exit report and the instance's last frames (an InitError sent just before it
            # exited, a Result) arrive on different sockets, and killing now would drop frames still unread
            # on the connection (the caller then saw "Runtime.StartFailed" instead of its import error). A
            # dead process's end of the connection is closed, so EOF normally ends it first; the kill is the
            # safety net for a connection something else still holds open.
            asyncio.get_running_loop().call_later(EXIT_GRACE, _kill_if_open, inst)

    async def _reap_loop(self) -> None:
        """Each second: keep-alive reaping; every `autoscale_interval`: one autoscaler decision per pool."""
        next_scale = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            scale = now >= next_scale
            if scale:
                next_scale = now + self.settings.autoscale_interval - 0.5
            for n, pool in enumerate(list(self.pools)):
                if dormant(pool):  # (a node of 10,000 functions, most of them idle, pays for the live ones)
                    continue
                # one pool's bug must not stop scaling for every other function
                with one_item(log, "%s: autoscaler/reaper", pool.revision.key):
                    if scale:
                        pool.autoscale(now)
                    pool.reap(now)
                if n % 256 == 255:
                    await asyncio.sleep(0)  # many live pools: calls are served between slices of the tick

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
        # Until every process is gone: by its exit report, or by its pid (an instance whose exit its function
        # zygote never reported stays in `_by_pid`, and cost every stop the whole timeout)
        while any(_alive(pid) for pid in self._by_pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.fzs is not None:
            self.fzs.stop()
        self.zygote.stop()
        self.launcher.stop()
        if self.cgroups is not None:
            self.cgroups.remove_base()


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie not yet reaped counts as alive: its parent reports it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
