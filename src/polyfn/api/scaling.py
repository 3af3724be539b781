"""Scaling routes: `POST /v1/functions/{name}/prewarm` starts instances now (bounded by max_instances
and the node's memory budget); `GET /v1/functions/{name}/instances` lists the live instances with their
RSS and PSS (read from /proc/PID/smaps_rollup of each instance's process tree)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import Request

from polyfn.api.errors import ApiError
from polyfn.instances.instance import State
from polyfn.instances.procfs import children, smaps

if TYPE_CHECKING:
    from polyfn.services import Instances, LiveFunctions


class PrewarmBody(msgspec.Struct, forbid_unknown_fields=True):
    instances: int = 1


def process_memory(pid: int) -> dict[str, int | None]:
    """Memory of an instance: its process and every descendant (with a pid namespace an instance is the
    outer process, the namespace's init and the worker), from /proc/PID/smaps_rollup.

    `pss_kb` adds up PSS (shared pages divided among the processes mapping them: the real footprint);
    `rss_kb` is the worker's RSS (the largest of the tree: RSS counts shared pages in full, so a sum would
    overstate); `processes` is the tree's size. None where /proc cannot be read (another user's process)."""
    rss: int | None = None
    pss: int | None = None
    n = 0
    todo = [pid] if pid else []
    while todo and n < 64:
        p = todo.pop()
        m = smaps(p)
        if m is not None:
            n += 1
            rss = max(rss or 0, m[0])
            pss = (pss or 0) + m[1]
        todo += children(p)
    return {"rss_kb": rss, "pss_kb": pss, "processes": n}


def instances_json(registry: LiveFunctions, name: str) -> list[dict[str, Any]]:
    """Live instances of the function's current revision, then of its pinned ones (versions, aliases)."""
    now = time.monotonic()
    out = []
    for rev, inst in [(a.revision.number, i) for a in registry.all_of(name) for i in a.pool.instances]:
        state = ("busy" if inst.inflight else "idle") if inst.state is State.READY else inst.state.value
        out.append({"id": inst.id, "pid": inst.pid, "revision": rev, "state": state,
                    "inflight": inst.inflight,
                    "served": inst.served, "age_s": round(now - inst.created, 1),
                    "idle_s": round(now - inst.last_used, 1) if not inst.inflight else 0.0,
                    "init_ms": round(inst.init_ms, 2), **process_memory(inst.pid)})
    return out


def zygote_json(manager: Instances, key: str) -> dict[str, Any] | None:
    """The revision's function zygote (import cache): its state, pid and own memory (the zygote process
    alone: its instances are listed as instances)."""
    fzs = manager.fzs
    if fzs is None:
        return None
    fz = fzs.get(key)
    if fz is None:
        state = "building" if key in fzs.building else f"none ({fzs.failed[key]})" if key in fzs.failed else "none"
        return {"state": state}
    m = smaps(fz.worker)
    return {"state": "ready", "pid": fz.worker, "supervisor_pid": fz.supervisor, "import_ms": round(fz.import_ms, 1),
            "instances": fz.instances, "reserved_mb": fz.memory_mb,
            "rss_kb": m[0] if m else None, "pss_kb": m[1] if m else None}


def scaling_json(registry: LiveFunctions, manager: Instances, name: str) -> dict[str, Any]:
    """The scaling block of `describe`: policy, autoscaler decision, memory of live instances."""
    active = registry.get(name)
    if active is None:
        return {}
    pool = active.pool
    w = pool.policy.window()
    d = pool.decision
    insts = instances_json(registry, name)
    return {
        "keepalive_policy": pool.policy.name,
        "keepalive_window": {"prewarm_s": round(w.prewarm, 1), "keepalive_s": round(w.keepalive, 1)},
        "autoscaler": None if d is None else {"desired": d.desired, "panic": d.panic, "valid": d.valid,
                                              "stable_avg": round(d.stable_avg, 3),
                                              "panic_avg": round(d.panic_avg, 3)},
        "cold_starts": pool.cold_starts,
        "evictions": pool.evictions,
        "rss_kb": sum(i["rss_kb"] or 0 for i in insts),
        "pss_kb": sum(i["pss_kb"] or 0 for i in insts),
        "instances": insts,
        "zygote": zygote_json(manager, pool.revision.key),
        "node_memory": {"budget_mb": manager.memory_budget_mb, "reserved_mb": manager.reserved_mb()},
    }


class ScalingRoutes:
    def __init__(self, *, registry: LiveFunctions, manager: Instances):
        self.registry = registry
        self.manager = manager

    async def prewarm(self, name: str, request: Request) -> dict[str, Any]:
        active = self.registry.get(name)
        if active is None:
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        raw = await request.body()
        try:
            body = msgspec.json.decode(raw, type=PrewarmBody) if raw.strip() else PrewarmBody()
        except msgspec.DecodeError as e:
            raise ApiError(400, "invalid_request", f"body must be {{\"instances\": N}}: {e}") from None
        if body.instances < 1:
            raise ApiError(400, "invalid_request", f"instances={body.instances} must be at least 1")
        pool = active.pool
        limit = pool.max_instances
        started = pool.prewarm(body.instances)
        live = pool.stats()
        return {"function": name, "requested": body.instances, "started": started, "max_instances": limit,
                "instances": live,
                "note": (f"capped at max_instances={limit}" if body.instances > limit else
                         "the node's memory budget had no room for more" if
                         live["starting"] + live["idle"] + live["busy"] < body.instances else "")}

    async def instances(self, name: str) -> dict[str, Any]:
        if self.registry.get(name) is None:
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        return {"function": name, "instances": instances_json(self.registry, name)}
