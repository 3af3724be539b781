"""The instance's view of the filesystem, inside its own mount namespace.

* `/tmp` (and `/dev/shm`, and `/var/tmp`, `/run/lock` on the host's root) is a fresh tmpfs of `tmp_mb` each (the
  function's ephemeral storage; the only writable places, besides what the host leaves writable to everyone),
  so a function cannot fill the node's disk or read other instances' files.
* Each `hide` directory (polyfn's data dir: `admin.key`, the database, every function's code) is covered
  by an empty read-only tmpfs (a `hide` file by /dev/null, read-only); the instance's own code and dependencies (`binds`) are then bind-mounted
  back, read-only, at their usual paths, through descriptors opened before anything was covered. A
  deploy-time build (deploy/isolate.py) gets its own directory back read-write (`rw_binds`, nosuid, nodev).
"""

from __future__ import annotations

import os

from polyfn.sandbox import linux
from polyfn.sandbox.plan import Prepared, SandboxPlan

_NOSUID_NODEV = linux.MS_NOSUID | linux.MS_NODEV

#: the world-writable directories of a Debian host besides /tmp and /dev/shm, each private in a sandbox on the
#: host's root (a deploy-time build); any other an operator adds stays shared (docs/security.md)
SHARED_WRITABLE = ("/var/tmp", "/run/lock")


def _private_tmp(tmp_mb: int) -> None:
    """A fresh tmpfs on /tmp, /dev/shm and the host's other world-writable directories (`SHARED_WRITABLE`)."""
    linux.mount("tmpfs", "/tmp", "tmpfs", _NOSUID_NODEV, f"size={tmp_mb}m,mode=1777")
    if os.path.isdir("/dev/shm"):  # the host's is shared by every process: give a private one
        linux.mount("tmpfs", "/dev/shm", "tmpfs", _NOSUID_NODEV | linux.MS_NOEXEC, f"size={tmp_mb}m,mode=1777")
    for shared in SHARED_WRITABLE:  # a build uid is reused by the next tenant's build, which would see (and could
        # replace) what the last one left there
        if os.path.isdir(shared) and not os.path.islink(shared):
            linux.mount("tmpfs", shared, "tmpfs", _NOSUID_NODEV, f"size={tmp_mb}m,mode=1777")


def setup(plan: SandboxPlan, prepared: Prepared | None = None) -> str:
    if plan.root:
        return _setup_root(plan, prepared)
    fds = [(b, os.open(b, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) for b in plan.binds if os.path.isdir(b)]
    rw = [(b, os.open(b, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)) for b in plan.rw_binds]
    fds_all = fds + rw
    try:
        if plan.tmp_mb:
            _private_tmp(plan.tmp_mb)
        hidden = []
        for h in sorted(plan.hide, key=len):  # parents first
            if os.path.isdir(h):
                linux.mount("tmpfs", h, "tmpfs", _NOSUID_NODEV | linux.MS_NOEXEC, "size=64k,mode=0755")
                hidden.append(h)
            elif os.path.isfile(h):  # a file (a build's host tool settings, /etc/pip.conf): reads as empty
                linux.mount("/dev/null", h, None, linux.MS_BIND)
                linux.mount("none", h, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | linux.MS_NOSUID)
        for target, fd in fds:
            os.makedirs(target, mode=0o755, exist_ok=True)
            linux.mount(f"/proc/self/fd/{fd}", target, None, linux.MS_BIND | linux.MS_REC)
            linux.mount("none", target, None, _ro_bind_flags(target))
        for target, fd in rw:
            os.makedirs(target, mode=0o755, exist_ok=True)
            linux.mount(f"/proc/self/fd/{fd}", target, None, linux.MS_BIND)
            linux.mount("none", target, None, linux.MS_REMOUNT | linux.MS_BIND | _NOSUID_NODEV | _kept_flags(target))
        for h in hidden:
            linux.mount("none", h, None, linux.MS_REMOUNT | linux.MS_RDONLY | _NOSUID_NODEV | linux.MS_NOEXEC)
        if plan.secret_files:
            _write_secrets(plan)
    finally:
        for _, fd in fds_all:
            os.close(fd)
    parts = []
    if plan.tmp_mb:
        parts.append(f"/tmp {plan.tmp_mb} MB")
    if plan.hide:
        parts.append("data dir hidden")
    if plan.rw_binds:
        parts.append("own build directory writable")
    if plan.secret_files:
        parts.append(f"{len(plan.secret_files)} secret(s) in /run/secrets")
    return "mount ns (" + ", ".join(parts or ["private"]) + ")"


SECRETS_DIR = "/run/secrets"


def _setup_root(plan: SandboxPlan, prepared: Prepared | None) -> str:
    """The instance's own root filesystem (sandbox/rootfs.py): nothing of the host but what it lists. A
    pre-forked blank may have built its shared part already (`sandbox.prepare`): then only the function's
    code, dependencies and /etc are added here."""
    from polyfn.sandbox import rootfs

    staged = prepared.root_staged if prepared is not None else ""
    if prepared is not None and prepared.entered:  # the blank entered the staged root ahead: no other root now
        if staged != rootfs.digest(plan.root, plan.root_mask):
            raise OSError("the blank entered a root filesystem the plan does not ask for")
        desc = rootfs.enter_ahead(plan.binds, plan.etc, plan.tmp_mb, prepared.trees)
    elif (staged and staged == rootfs.digest(plan.root, plan.root_mask)
            and not any(rootfs.under(b, rootfs.STAGE) for b in plan.binds)):
        desc = rootfs.enter_staged(plan.binds, plan.etc, plan.tmp_mb)
    else:
        if staged:  # built for another plan (or the code lives under the stage): drop it
            linux.umount(rootfs.STAGE)
            prepared.root_staged = ""  # type: ignore[union-attr]  (what the blank computed from it is void)
        desc = rootfs.enter(plan.root, plan.binds, plan.etc, plan.tmp_mb, plan.root_mask)
    if plan.secret_files:
        os.makedirs(SECRETS_DIR, mode=0o755, exist_ok=True)
        _write_secrets(plan)
    rootfs.seal()
    parts = [desc]
    if plan.tmp_mb:
        parts.append(f"/tmp {plan.tmp_mb} MB")
    if plan.secret_files:
        parts.append(f"{len(plan.secret_files)} secret(s) in /run/secrets")
    return "mount ns (" + ", ".join(parts) + ")"

# statvfs flag → mount flag, for the flags a remount inside a user namespace must keep ("locked" flags).
_KEEP = ((os.ST_NOEXEC, linux.MS_NOEXEC), (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))


def _ro_bind_flags(path: str) -> int:
    return linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | _NOSUID_NODEV | _kept_flags(path)


def _kept_flags(path: str) -> int:
    current = os.statvfs(path).f_flag
    flags = 0
    for st, ms in _KEEP:
        if current & st:
            flags |= ms
    return flags


def _write_secrets(plan: SandboxPlan) -> None:
    """OpenFaaS style: one file per secret under /run/secrets, on a tmpfs only this instance sees."""
    size = sum(len(v.encode()) for v in plan.secret_files.values()) + 64 * 1024
    linux.mount("tmpfs", SECRETS_DIR, "tmpfs", _NOSUID_NODEV | linux.MS_NOEXEC, f"size={size},mode=0500")
    for name, value in plan.secret_files.items():
        path = os.path.join(SECRETS_DIR, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        if plan.uid:
            os.chown(path, plan.uid, plan.gid)
    if plan.uid:
        os.chown(SECRETS_DIR, plan.uid, plan.gid)
    linux.mount("none", SECRETS_DIR, None, linux.MS_REMOUNT | linux.MS_RDONLY | _NOSUID_NODEV | linux.MS_NOEXEC)
