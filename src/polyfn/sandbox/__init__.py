"""Isolation applied to an instance between fork and user code.

`SandboxPlan` is built by the server (plain data, sent to the zygote); `apply()` runs in the forked child,
before the function's module is imported, in a fixed order: join the cgroup (while still privileged) and
set its limits, then set rlimits. Each layer reports what it did, so the activation's init info can say
honestly which isolation is in force.
"""

from __future__ import annotations

import os

from polyfn.sandbox.plan import SandboxPlan, cgroup_dir_for

__all__ = ["SandboxPlan", "apply", "cgroup_dir_for", "prejoin"]


def prejoin(plan_base: str, version: int) -> None:
    """The slow part of the cgroup layer (moving the process in), done by pre-forked blank children."""
    from polyfn.sandbox import cgroups

    cgroups.join(cgroup_dir_for(plan_base, os.getpid()), version)


def apply(plan: SandboxPlan, joined: bool = False) -> list[str]:
    """Apply every layer of `plan` to the current process; return a short description of each layer."""
    from polyfn.sandbox import cgroups, limits

    applied: list[str] = []
    if plan.cgroup_base:
        d = cgroup_dir_for(plan.cgroup_base, os.getpid())
        if not joined:
            cgroups.join(d, plan.cgroup_version)
        applied.append(cgroups.set_limits(d, plan.cgroup_version, plan.memory_mb, plan.pids_max))
    applied.append(limits.apply_rlimits(plan))
    return applied
