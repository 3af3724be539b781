"""What isolation an instance gets: plain data built by the server, applied in the child."""

from __future__ import annotations

import os

import msgspec

LAYERS = ("cgroup", "mount", "root", "pid", "net", "egress", "uid", "seccomp")  # switchable with POLYFN_SANDBOX_DISABLE


class SandboxPlan(msgspec.Struct, kw_only=True, array_like=True):
    memory_mb: int
    cgroup_base: str = ""  # empty: no cgroup; memory is then bounded by RLIMIT_AS
    cgroup_version: int = 0
    pids_max: int = 256
    nofile: int = 1024
    fsize_mb: int = 512  # largest file the function may write
    # --- the security layers (issue 8); zero/empty values mean "layer off"
    cpu_shares: int = 0  # relative CPU weight (v1 cpu.shares; v2 cpu.weight is derived)
    cpu_quota: float = 0.0  # cores; 0 = no hard cap
    uid: int = 0  # 0: keep the zygote's uid (never chosen when running as root with the uid layer on)
    gid: int = 0
    tmp_mb: int = 0  # size of the private /tmp (needs the mount namespace)
    hide: list[str] = []  # directories covered by an empty read-only tmpfs (the data dir …)
    binds: list[str] = []  # directories inside `hide` made visible again, read-only (own code, deps)
    network: str = "all"  # egress | host (= all) | polyfn | none: sandbox.network
    allow: list[str] = []  # egress/polyfn: "IP:PORT" a function may reach (relayed by the server)
    net_group: int = 0  # egress: the veth's interface group for the allow-list's CIDRs (sandbox/egress.py)
    seccomp: str = ""  # the allow-list (sandbox/seccomp.py): "python" | "node" | "http"; "" = layer off
    no_new_privs: bool = True
    secret_files: dict[str, str] = {}  # name → value, written to /run/secrets/NAME (tmpfs, 0400, the uid's)
    relay_socket: str = ""  # network `polyfn`: the server's NetRelay socket (sandbox/relay.py)
    relay_ports: list[int] = []  # network `polyfn`: polyfn's ports, reachable at 127.0.0.1:PORT inside
    # --- the root filesystem (sandbox/rootfs.py); empty `root`: the host's root stays, `hide` applies
    root: list[str] = []  # host paths bound read-only into the instance's own root (besides `binds`)
    root_mask: list[str] = []  # directories a bind brings along that stay empty (site-packages …)
    etc: dict[str, str] = {}  # the generated /etc: file name → content
    # --- deploy-time builds (deploy/isolate.py)
    rw_binds: list[str] = []  # directories inside `hide` made visible again read-write (a build's own directory)
    nproc: int = 0  # RLIMIT_NPROC (processes of the uid); 0 = unchanged (a build's uid is its own)


class Prepared(msgspec.Struct, kw_only=True):
    """What a blank child already set up before it knew which function it would become."""

    cgroup_dirs: list[str] = []  # cgroups joined (memory first, then pids, cpu)
    cgroup_version: int = 0
    namespaces: list[str] = []  # "mount", "pid", "net" entered
    host_netns_fd: int = -1  # to go back to the host network for `network: all`
    egress: str = ""  # the instance's address on its veth pair, when the blank made one (sandbox/veth.py)
    root_staged: str = ""  # rootfs.digest of the shared root a blank built at rootfs.STAGE ("" if none)
    pid_ns: bool = False  # we are in a fresh pid namespace, under an init and a supervisor
    host_pid: int = 0  # the supervisor's pid: the one the server knows for this instance
    notes: list[str] = []  # why a layer could not be entered (reported in the instance's info)
    preset: list[float] = []  # cgroup limits already written: [memory_mb, pids_max, cpu_shares, cpu_quota]
    preset_desc: str = ""  # what set_limits reported for them
    #: names of the zygote's modules whose files the staged root lacks (runtimes/python/startup.py
    #: `stage_imports`), for `root_staged`; None: not computed
    missing_modules: list[str] | None = None
    #: the blank entered its staged root ahead (rootfs.pivot_ahead): the function's part comes from `trees`
    entered: bool = False
    trees: list[int] = []  # the spawn's detached copies of the plan's binds (open_tree), closed after the mounts
    relay_path: str = ""  # the server's relay socket, reached through `relay_fd` (opened before the pivot)
    relay_fd: int = -1


def cgroup_dir_for(base: str, pid: int) -> str:
    """Each instance's cgroup is named after its pid, so the server can find it from the pid alone."""
    return os.path.join(base, f"p{pid}")
