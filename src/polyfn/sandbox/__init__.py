"""Isolation applied to an instance between fork and user code.

Two phases:

* `prepare()` runs in a fresh child of the zygote *before* it knows which function it will become (in the
  pre-forked blanks, off the cold-start path): join the instance's cgroups, unshare the mount/ipc/uts,
  network and pid namespaces (forking once more so the instance is pid 1 of its own pid namespace, with a
  fresh /proc).
* `apply(plan, prepared)` runs once the function is known, before its module is imported, in a fixed
  order: cgroup limits → network (back to the host network, or loopback only) → mounts (private /tmp,
  data dir hidden, own code read-only) → rlimits → uid/gid drop → no_new_privs → seccomp.

`SandboxPlan` is plain data built by the server. Each layer reports what it did, so the activation's init
info says honestly which isolation is in force. A layer the plan requires but the child could not set up
fails the start (fail closed) instead of running the function with less isolation than announced.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from polyfn.sandbox.plan import LAYERS, Prepared, SandboxPlan, cgroup_dir_for

__all__ = ["LAYERS", "Prepared", "SandboxError", "SandboxPlan", "apply", "cgroup_dir_for", "prepare"]


class SandboxError(OSError):
    """A layer the plan requires could not be applied: the instance must not run."""


def prepare(env: Mapping[str, str], pdeathsig: Callable[[], None]) -> Prepared:
    """In a new child of the zygote: join cgroups and enter namespaces (see module doc).

    `env` is the zygote's environment: `POLYFN_CGROUP_BASE` (memory) and `POLYFN_CGROUP_EXTRA`
    (`ctrl=path,…`, v1), `POLYFN_CGROUP_VERSION`, `POLYFN_SANDBOX_NS` (`mount,pid,net`), `POLYFN_SANDBOX_INIT`
    (the native helper of the pid namespace, sandbox/pidinit.py)."""
    from polyfn.sandbox import cgroups, linux, namespaces

    prepared = Prepared()
    base = env.get("POLYFN_CGROUP_BASE", "")
    if base:
        bases = [base] + [kv.partition("=")[2] for kv in env.get("POLYFN_CGROUP_EXTRA", "").split(",") if kv]
        dirs = [cgroup_dir_for(b, os.getpid()) for b in bases]
        try:
            cgroups.join(dirs)
            prepared.cgroup_dirs = [cgroups.pinned(d) for d in dirs]  # (the staged root covers /sys below)
            prepared.cgroup_version = int(env.get("POLYFN_CGROUP_VERSION", "0") or 0)
        except OSError as e:
            prepared.notes.append(f"could not join a cgroup: {e}")
        preset = env.get("POLYFN_CGROUP_PRESET", "")
        if prepared.cgroup_dirs and preset:  # the default function's limits, written off the cold path
            try:
                mem, pids, shares, quota = (float(x) for x in preset.split(","))
                prepared.preset_desc = cgroups.set_limits(prepared.cgroup_dirs, prepared.cgroup_version, int(mem),
                                                          int(pids), int(shares), quota)
                prepared.preset = [mem, pids, shares, quota]
            except (OSError, ValueError) as e:
                prepared.notes.append(f"could not preset cgroup limits: {e}")
    layers = {x for x in env.get("POLYFN_SANDBOX_NS", "").split(",") if x}
    if layers:
        namespaces.enter(layers, prepared, pdeathsig, env.get("POLYFN_SANDBOX_INIT", ""))
    staged = env.get("POLYFN_SANDBOX_ROOT", "")
    if staged and "mount" in prepared.namespaces:  # the shared part of the root filesystem, off the cold path
        from polyfn.sandbox import rootfs

        try:
            cfg, root_digest = staged_root(staged)
            rootfs.build(cfg["root"], cfg["mask"], int(cfg["tmp_mb"]), rootfs.STAGE)
            prepared.root_staged = root_digest
        except (OSError, ValueError, KeyError) as e:  # built at spawn instead
            prepared.notes.append(f"could not stage the root filesystem: {e}")
            try:
                linux.umount(rootfs.STAGE)
            except OSError:
                pass
    if env.get("POLYFN_SANDBOX_EGRESS") == "1" and prepared.host_netns_fd >= 0:  # the default network's veth
        from polyfn.sandbox import veth

        try:
            prepared.egress = veth.connect(prepared.host_netns_fd, prepared.host_pid or os.getpid())
        except OSError as e:  # tried again at spawn for an `egress` function, which fails closed
            prepared.notes.append(f"could not make the egress veth: {e}")
    return prepared


#: the Python zygote's blanks enter their staged root ahead (`enter_ahead`; set by the zygote from
#: `POLYFN_SANDBOX_ROOT`), and the server's relay socket they open before entering it
AHEAD = False
HOST_RELAY = ""


def enter_ahead(prepared: Prepared) -> None:
    """In a pre-forked blank that staged the shared root, once its own steps that need the host's files are
    done: enter that root now (rootfs.pivot_ahead), so a spawn only adds the function's part, from the detached
    copies its request brings (`Prepared.trees`). The relay's socket (`HOST_RELAY`) is opened first and reached
    through that descriptor. When the pivot fails the blank stays as it was (the spawn enters the root)."""
    from polyfn.sandbox import rootfs

    if not AHEAD or not prepared.root_staged:
        return
    relay_path, relay_fd = HOST_RELAY, -1
    try:
        if relay_path:
            relay_fd = os.open(relay_path, os.O_PATH | os.O_CLOEXEC)
        rootfs.pivot_ahead()
    except OSError as e:
        prepared.notes.append(f"could not enter the staged root ahead: {e}")
        if relay_fd >= 0:
            os.close(relay_fd)
        return
    prepared.entered = True
    prepared.relay_path, prepared.relay_fd = relay_path, relay_fd


def release_host(prepared: Prepared) -> None:
    """Close what reaches the host's files (the spawn's copies of the function's paths, the relay's socket,
    the descriptors of the instance's cgroup directories its limits were written through): right after the
    mounts and the limits, before any user code. (A cgroup directory's descriptor let a function walk `..`
    into the host's cgroup tree and read every instance's cgroups.)"""
    from polyfn.sandbox import cgroups

    pinned = [cgroups.pinned_fd(d) for d in prepared.cgroup_dirs]
    for fd in [*prepared.trees, prepared.relay_fd, *pinned]:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
    prepared.trees, prepared.relay_fd = [], -1
    if any(fd >= 0 for fd in pinned):
        prepared.cgroup_dirs = []  # (their limits are written; nothing after this reaches them)


_STAGED: dict[str, tuple[dict, str]] = {}


def staged_root(text: str) -> tuple[dict, str]:
    """`POLYFN_SANDBOX_ROOT` parsed, and its digest: the same in every blank, so the zygote parses it once
    before it forks (a blank that parsed it would copy json's pages); raises ValueError or KeyError."""
    known = _STAGED.get(text)
    if known is None:
        import json

        from polyfn.sandbox import rootfs

        cfg = json.loads(text)
        known = _STAGED[text] = (cfg, rootfs.digest(cfg["root"], cfg["mask"]))
    return known


def check_required(prepared: Prepared, required: tuple[str, ...]) -> None:
    missing = [ns for ns in required if ns not in prepared.namespaces]
    if missing:
        why = "; ".join(prepared.notes) or "not entered"
        raise SandboxError(f"sandbox: {', '.join(missing)} namespace required but unavailable ({why})")


def limit_cgroup(plan: SandboxPlan, prepared: Prepared) -> str:
    """Write the plan's cgroup limits (unless a blank preset exactly these); "" without a cgroup."""
    from polyfn.sandbox import cgroups

    if not plan.cgroup_base:
        return ""
    if not prepared.cgroup_dirs:
        raise SandboxError("sandbox: cgroup required but not joined (" + "; ".join(prepared.notes) + ")")
    wanted = [float(plan.memory_mb), float(plan.pids_max), float(plan.cpu_shares), float(plan.cpu_quota)]
    if prepared.preset == wanted:
        return prepared.preset_desc
    return cgroups.set_limits(prepared.cgroup_dirs, plan.cgroup_version, plan.memory_mb, plan.pids_max,
                              plan.cpu_shares, plan.cpu_quota)


HOST_NETWORKS = ("all", "host")
RELAYED = ("polyfn", "egress")


def network(plan: SandboxPlan, prepared: Prepared, relay: bool = True, keep_host: bool = False,
            pending: list[Any] | None = None) -> str:
    """`host` (`all`): back to the host network; `none`: stay in (or make) a loopback-only namespace;
    `polyfn`: the same plus relayed listeners for polyfn's own ports and the function's allow-list
    (sandbox/relay.py); `egress`: `polyfn` plus a veth pair to the outside under the host's nftables
    policy (sandbox/veth.py, sandbox/egress.py). `relay=False`: the listeners are made later (a Node
    agent, once its function is known; `keep_host` keeps the host network's handle for it, see
    `join_group`). With `pending` (a list), the relay's answer is not waited for here: its `relay.Offered` is
    appended, and the caller reads it (`finish_network`) before any user code runs. Returns what was done."""
    from polyfn.sandbox import linux

    kind = plan.network
    if prepared.host_netns_fd >= 0:
        try:
            if kind in HOST_NETWORKS:
                linux.setns(prepared.host_netns_fd, linux.CLONE_NEWNET)
            elif kind == "egress" and not prepared.egress:
                from polyfn.sandbox import veth

                prepared.egress = veth.connect(prepared.host_netns_fd, prepared.host_pid or os.getpid(),
                                               plan.net_group)
            elif kind == "egress" and plan.net_group:  # the blank's veth, put in the allow-list's group
                from polyfn.sandbox import veth

                veth.set_group(prepared.host_netns_fd, prepared.host_pid or os.getpid(), plan.net_group)
            elif kind != "egress" and prepared.egress:  # the blank's veth is not for this function
                from polyfn.sandbox import veth

                veth.remove()
                prepared.egress = ""
        except OSError as e:
            raise SandboxError(f"sandbox: network {kind!r} cannot be set up ({e.strerror or e})") from None
        finally:
            if not keep_host:
                os.close(prepared.host_netns_fd)
                prepared.host_netns_fd = -1
    elif kind not in HOST_NETWORKS:
        if kind == "egress":
            raise SandboxError("sandbox: network 'egress' needs the host network's handle (root, net layer)")
        try:
            linux.unshare(linux.CLONE_NEWNET)
            linux.loopback_up()
        except OSError as e:
            raise SandboxError(f"sandbox: network {kind!r} cannot be enforced ({e.strerror or e})") from None
    if kind in HOST_NETWORKS:
        return ""
    done = "net ns (loopback only)"
    if kind == "egress":
        done = f"net ns (egress via veth {prepared.egress}, host and private ranges refused)"
        if plan.net_group:
            done += f"; allow-list ranges open (group {plan.net_group})"
    nothing = not plan.relay_socket or not (plan.relay_ports or plan.allow)
    if kind == "egress" and nothing and not plan.allow:
        relay = False  # a node without a relay (`polyfn run`): egress works, polyfn's ports are not reachable
    if kind in RELAYED and relay:
        from polyfn.sandbox import relay as netrelay

        if nothing:
            raise SandboxError(f"sandbox: network {kind!r} needs the server's relay (no endpoint to relay)")
        try:
            if pending is None:
                done += "; " + netrelay.expose(plan.relay_socket, plan.relay_ports, prepared.host_pid or os.getpid(),
                                            plan.allow)
            else:
                path = plan.relay_socket
                if prepared.relay_fd >= 0 and path == prepared.relay_path:  # (entered ahead: not by its path)
                    path = f"/proc/self/fd/{prepared.relay_fd}"
                offered = netrelay.offer(path, plan.relay_ports, prepared.host_pid or os.getpid(), plan.allow)
                pending.append(offered)
                done += "; " + offered.desc
        except OSError as e:
            raise SandboxError(f"sandbox: network {kind!r} cannot be set up ({e.strerror or e})") from None
    return done


def finish_network(plan: SandboxPlan, pending: list[Any]) -> None:
    """The relay's answers `network(pending=…)` left unread: a refusal fails the start (before user code)."""
    while pending:
        try:
            pending.pop().answer()
        except OSError as e:
            raise SandboxError(f"sandbox: network {plan.network!r} cannot be set up ({e.strerror or e})") from None


def join_group(plan: SandboxPlan, prepared: Prepared) -> str:
    """A Node agent's second step, once its function is known: the veth's interface group for the function's
    CIDR entries. Closes the host network's handle `network(keep_host=True)` kept."""
    if prepared.host_netns_fd < 0:
        return ""
    try:
        if plan.network == "egress" and plan.net_group and prepared.egress:
            from polyfn.sandbox import veth

            try:
                veth.set_group(prepared.host_netns_fd, prepared.host_pid or os.getpid(), plan.net_group)
            except OSError as e:
                raise SandboxError(f"sandbox: the allow-list's ranges cannot be opened ({e.strerror or e})") from None
            return f"allow-list ranges (group {plan.net_group})"
        return ""
    finally:
        os.close(prepared.host_netns_fd)
        prepared.host_netns_fd = -1


def apply(plan: SandboxPlan, prepared: Prepared | None = None, required: tuple[str, ...] = ()) -> list[str]:
    """Apply every layer of `plan` to the current process; return a short description of each layer."""
    from polyfn.sandbox import limits, linux

    prepared = prepared or Prepared()
    check_required(prepared, required)
    if plan.seccomp:  # compiled while libseccomp is in reach (before the instance's own root filesystem)
        from polyfn.sandbox import seccomp

        seccomp.program_for(plan.seccomp)
    applied: list[str] = []
    if cg := limit_cgroup(plan, prepared):
        applied.append(cg)
    pending: list[Any] = []  # the relay's answer, read after the mounts: its round trip overlaps them
    try:
        if net := network(plan, prepared, pending=pending):
            applied.append(net)
        if "pid" in prepared.namespaces:
            applied.append("pid ns")
        if "mount" in prepared.namespaces:
            from polyfn.sandbox import mounts

            applied.append(mounts.setup(plan, prepared))
        release_host(prepared)
        finish_network(plan, pending)
    finally:
        release_host(prepared)
        for offered in pending:  # (a mount failed first: the connection is not left open)
            offered.ctl.close()
    applied.append(limits.apply_rlimits(plan))
    if plan.uid:
        os.setgroups([])
        os.setresgid(plan.gid, plan.gid, plan.gid)
        os.setresuid(plan.uid, plan.uid, plan.uid)
        applied.append(f"uid {plan.uid}")
    if plan.no_new_privs or plan.seccomp:
        linux.set_no_new_privs()
    if plan.seccomp:
        from polyfn.sandbox import seccomp

        seccomp.install(plan.seccomp)
        applied.append(f"seccomp ({plan.seccomp} allow-list)")
    return applied
