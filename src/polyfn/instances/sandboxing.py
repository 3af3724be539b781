"""The sandbox a node gives its instances (sandbox/ applies it in each child): which layers this host allows
and configuration leaves on, decided once at start from a probe (`decide`: decisions.py's pure
`decide_isolation`, the cgroup base, the default network's nftables table), the environment the zygote's and
launcher's blanks prepare with, and per revision the `SandboxPlan` of its instances: limits, mounts, its own
root filesystem, uid, network kind and allow-list, seccomp (`plan_for`, built once per revision).
The instance manager (manager.py) owns one and asks it before each start."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import msgspec

from polyfn.config import Settings
from polyfn.instances import decisions
from polyfn.model import Revision
from polyfn.runtimes import dotnet
from polyfn.runtimes.python.startup import PROVIDED_DIR
from polyfn.sandbox import probe, rootfs
from polyfn.sandbox.auditlog import SeccompLog
from polyfn.sandbox.cgroups import CgroupBase
from polyfn.sandbox.plan import SandboxPlan

log = logging.getLogger("polyfn.manager")


class NodeSandbox:
    def __init__(self, settings: Settings):
        self.settings = settings
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
        self._plans: dict[tuple[str, float, str], SandboxPlan] = {}  # per revision (see `plan_for`)
        #: `network: polyfn` (sandbox/relay.py): the server's relay, set by the node before `start`
        self.relay: Any = None
        #: the pid namespace's native supervisor/init (sandbox/pidinit.py); "" = the Python ones
        self.pid_helper = ""

    def blank_env(self) -> tuple[dict[str, str], dict[str, str]]:
        """What the blanks read to prepare the sandbox before a function is chosen: (the launcher's, for node
        and http instances; the Python zygote's, which also builds the shared root filesystem)."""
        s = self.settings
        env = {"POLYFN_SANDBOX_NS": ",".join(sorted(self.namespaces))}
        if self.pid_helper:
            env["POLYFN_SANDBOX_INIT"] = self.pid_helper
        if self.cgroups is not None:
            env.update({"POLYFN_CGROUP_BASE": str(self.cgroups.memory),
                        "POLYFN_CGROUP_EXTRA": ",".join(f"{k}={v}" for k, v in self.cgroups.extra.items()),
                        "POLYFN_CGROUP_VERSION": str(self.cgroups.version),
                        # blanks preset the limits of a default-memory function (same values as plan_for)
                        "POLYFN_CGROUP_PRESET": f"{s.default_memory},{s.pids_max},{max(2, s.default_memory)},"
                                                f"{s.cpu_quota}"})
        env["POLYFN_ZYGOTE_VENDORS"] = "1" if self.settings.zygote_vendor_preload else "0"
        if self.egress and "net" in self.namespaces:  # blanks make the default network's veth off the cold path
            env["POLYFN_SANDBOX_EGRESS"] = "1"
        zygote = env
        if self.rootfs and "mount" in self.namespaces:  # Python blanks build the shared root off the cold path
            zygote = {**env, "POLYFN_SANDBOX_ROOT": json.dumps(
                {"root": self._root["python"], "mask": self._root_mask, "tmp_mb": s.tmp_size,
                 # and enter it too (sandbox.enter_ahead), reaching the relay through a descriptor
                 "ahead": s.enter_root_ahead, "relay": str(self.relay.path) if self.relay is not None else ""})}
        return env, zygote

    async def decide(self) -> None:
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
        if "pid" in self.namespaces and self.settings.native_init:
            await self._decide_pid_helper()
        if "user" in iso.namespaces:
            parts.insert(0, "user ns (not root)")
        await self._decide_egress(off, parts, skipped)
        parts.append("rlimits")
        self.isolation = " + ".join(parts) + ("; off: " + ", ".join(skipped) if skipped else "")

    async def _decide_pid_helper(self) -> None:
        from polyfn.sandbox import pidinit

        path, why = await asyncio.to_thread(pidinit.build, self.settings.data_dir.resolve() / "runtime")
        self.pid_helper = path
        if why:
            log.warning("pid namespace helpers stay Python processes (~3 MB more per instance): %s", why)

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

    def plan_for(self, rev: Revision) -> SandboxPlan:
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
            # (real paths with the root layer: a blank that entered its root ahead finds them in the host's tree)
            binds=[*((os.path.realpath(d) if self.rootfs else d) for d in (rev.code_dir, rev.deps_dir) if d),
                   *self._expose[1]] if mounts else [],
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

    def forget(self, rev: Revision) -> None:
        """`rev` no longer runs here: its plan is dropped."""
        self._plans.pop((rev.key, rev.created_at, rev.code_sha256), None)
