"""The instance's view of the filesystem, inside its own mount namespace.

* `/tmp` (and `/dev/shm`) is a fresh tmpfs of `tmp_mb` each (the only writable places, besides what the host leaves writable to
  everyone), so a function cannot fill the node's disk or read other instances' files.
* Each `hide` directory (polyfn's data dir: `admin.key`, the database, every function's code) is covered
  by an empty read-only tmpfs; the instance's own code and dependencies (`binds`) are then bind-mounted
  back, read-only, at their usual paths, through descriptors opened before anything was covered.
"""

from __future__ import annotations

import os

from polyfn.sandbox import linux
from polyfn.sandbox.plan import SandboxPlan

_NOSUID_NODEV = linux.MS_NOSUID | linux.MS_NODEV


def setup(plan: SandboxPlan) -> str:
    fds = [(b, os.open(b, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) for b in plan.binds if os.path.isdir(b)]
    try:
        if plan.tmp_mb:
            linux.mount("tmpfs", "/tmp", "tmpfs", _NOSUID_NODEV, f"size={plan.tmp_mb}m,mode=1777")
            if os.path.isdir("/dev/shm"):  # the host's is shared by every process: give a private one
                linux.mount("tmpfs", "/dev/shm", "tmpfs", _NOSUID_NODEV | linux.MS_NOEXEC,
                            f"size={plan.tmp_mb}m,mode=1777")
        hidden = []
        for h in sorted(plan.hide, key=len):  # parents first
            if os.path.isdir(h):
                linux.mount("tmpfs", h, "tmpfs", _NOSUID_NODEV | linux.MS_NOEXEC, "size=64k,mode=0755")
                hidden.append(h)
        for target, fd in fds:
            os.makedirs(target, mode=0o755, exist_ok=True)
            linux.mount(f"/proc/self/fd/{fd}", target, None, linux.MS_BIND | linux.MS_REC)
            linux.mount("none", target, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | _NOSUID_NODEV)
        for h in hidden:
            linux.mount("none", h, None, linux.MS_REMOUNT | linux.MS_RDONLY | _NOSUID_NODEV | linux.MS_NOEXEC)
    finally:
        for _, fd in fds:
            os.close(fd)
    parts = []
    if plan.tmp_mb:
        parts.append(f"/tmp {plan.tmp_mb} MB")
    if plan.hide:
        parts.append("data dir hidden")
    return "mount ns (" + ", ".join(parts or ["private"]) + ")"
