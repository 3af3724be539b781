"""rlimits: the layer that works everywhere, root or not."""

from __future__ import annotations

import resource

from polyfn.sandbox.plan import SandboxPlan


def _set(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def apply_rlimits(plan: SandboxPlan) -> str:
    _set(resource.RLIMIT_NOFILE, plan.nofile)
    _set(resource.RLIMIT_CORE, 0)
    _set(resource.RLIMIT_FSIZE, plan.fsize_mb * 1024 * 1024)
    if plan.nproc:
        _set(resource.RLIMIT_NPROC, plan.nproc)
    if not plan.cgroup_base:
        # Without a memory cgroup the address-space limit is the only memory bound. It counts virtual
        # memory, so give generous headroom over the function's MB (allocator arenas, thread stacks).
        _set(resource.RLIMIT_AS, (plan.memory_mb + 512) * 1024 * 1024)
        return f"rlimits (nofile {plan.nofile}, address space {plan.memory_mb + 512} MB)"
    return f"rlimits (nofile {plan.nofile})"
