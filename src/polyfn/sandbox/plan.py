"""What isolation an instance gets: plain data built by the server, applied in the child."""

from __future__ import annotations

import os

import msgspec


class SandboxPlan(msgspec.Struct, kw_only=True, array_like=True):
    memory_mb: int
    cgroup_base: str = ""  # empty: no cgroup; memory is then bounded by RLIMIT_AS
    cgroup_version: int = 0
    pids_max: int = 256
    nofile: int = 1024
    fsize_mb: int = 512  # largest file the function may write


def cgroup_dir_for(base: str, pid: int) -> str:
    """Each instance's cgroup is named after its pid, so the server can find it from the pid alone."""
    return os.path.join(base, f"p{pid}")
