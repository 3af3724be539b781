"""Starts from a function zygote (the manager's, `InstanceManager.start_instance`): taking its offered child,
pipelined, or forking one on demand, with the zygote's shared cgroup sized for one more instance first.
The zygotes themselves: fnzygote.py; why a start takes this path: docs/performance.md, "Python cold start"."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import msgspec

from polyfn.instances.fnzygote import FunctionZygote
from polyfn.instances.instance import Instance
from polyfn.instances.zygote import ZygoteError
from polyfn.protocol.spec import InstanceSpec
from polyfn.sandbox import cgroups
from polyfn.sandbox.plan import cgroup_dir_for

log = logging.getLogger("polyfn.manager")


def size_zygote(m: Any, fz: FunctionZygote, plan: Any) -> bool | None:
    """Raise the function zygote's cgroup limits for one more instance if needed: True if they were
    written, False if not needed, None if they could not be (then the start is a clean one).
    The zygote, its offered child, its live instances and the ones being forked now (a burst has many
    `Spawn`s in flight: counting only the live ones once sized the cgroup for 2 processes while the
    zygote forked 150, and the kernel's OOM killer took the zygote) share the zygote's cgroup."""
    n = fz.instances + fz.spawning + 2
    if m.sandbox.cgroups is None or n <= fz.high_water:
        return False
    try:
        cgroups.set_limits(m.sandbox.cgroups.dirs_for(fz.supervisor), m.sandbox.cgroups.version,
                           plan.memory_mb * n, plan.pids_max * n, plan.cpu_shares, plan.cpu_quota)
    except OSError as e:
        log.warning("%s: cannot raise the function zygote's cgroup limits: %s", fz.key, e)
        return None
    fz.high_water = n
    return True


def size_ahead(m: Any, fz: FunctionZygote, function: str, memory_mb: int) -> None:
    """A zygote built at deploy, its revision's first call about to come: its cgroup sized for that call's
    instance now (`size_zygote` as the start would, then the function's CPU weight again), off the call's path.
    The same high-water sizing, only earlier: nothing of the function runs in the zygote's cgroup before it."""
    if fz.plan is not None and _size_for_one_more(m, fz):
        m.cpu.join(function, memory_mb, fz.supervisor)


def _size_for_one_more(m: Any, fz: FunctionZygote) -> bool | None:
    """`size_zygote` for one instance more than the zygote has and is forking (its next start's)."""
    fz.spawning += 1
    try:
        return size_zygote(m, fz, fz.plan)
    finally:
        fz.spawning -= 1


async def take_offer(m: Any, fz: FunctionZygote, pool: Any, iid: str, t0: float) -> Instance | None:
    """Start the zygote's offered child as instance `iid`, pipelined: `Take` is written and the instance
    handed to its pool at once, without waiting for its `Ready`. The child runs none of the function's code
    between the zygote's import and its `Ready` (it sets its identity and answers), so it cannot fail to
    start; the first call's `Invoke` follows `Take` on the connection and the child reads it right after
    sending `Ready` (one wake-up of each side instead of two). A child that dies before its `Ready` fails
    the call written to it as a crash. None without an offer, or when the zygote's cgroup cannot be sized
    (the caller then forks on demand or starts clean)."""
    taken = _take(m, fz, iid)
    if taken is None:
        return None
    host, conn, info, inst, iid, wrote = taken
    if inst is not None:  # made as the offer came (`prepare`)
        _adopt(fz, inst, pool, iid)
    else:
        inst = _handle(m, fz)
        inst.id, inst.on_lost, inst.pid = iid, pool.on_lost, host
        try:
            await _attach(inst, conn)
        except BaseException:
            inst.kill("spawn failed")
            raise
    return _taken(m, fz, pool, inst, host, info, wrote, t0)


def take_now(m: Any, fz: FunctionZygote, pool: Any, iid: str, t0: float) -> Instance | None:
    """`take_offer` without a wait, for a pool's start in its own turn of the loop (`Starter.start_now`): only
    when the offered child's handle is made (`prepare`); None otherwise, the offer left for `take_offer`."""
    prepared = fz.prepared
    if prepared is None or not prepared.done() or prepared.cancelled() or prepared.exception() is not None:
        return None
    taken = _take(m, fz, iid)
    if taken is None:
        return None
    host, _, info, inst, iid, wrote = taken
    if inst is None:  # (cannot be: the handle was made)
        return None
    _adopt(fz, inst, pool, iid)
    return _taken(m, fz, pool, inst, host, info, wrote, t0)


def _take(m: Any, fz: FunctionZygote, iid: str) -> tuple[int, socket.socket, str, Instance | None, str, bool] | None:
    """The offer taken (`FunctionZygote.take`) once the zygote's cgroup is sized for it: (host pid, connection,
    info, handle or None, instance id, whether the cgroup's limits were written); None without it."""
    wrote = _size_for_one_more(m, fz)
    taken = fz.take(iid) if wrote is not None else None
    return None if taken is None else (*taken, bool(wrote))


def _adopt(fz: FunctionZygote, inst: Instance, pool: Any, iid: str) -> None:
    """The handle made as the offer came (`prepare`), now instance `iid` of `pool`. The OOM kills its zygote's
    cgroup had so far (none of them its own) are read once this turn of the loop is over: after the first call's
    `Invoke` is written (a `pread`, slow on a server just woken from idle), before any frame of its answer is."""
    inst.id = iid
    inst.on_lost = pool.on_lost
    inst.created = inst.last_used = time.monotonic()
    if inst.memory is not None:
        fz.loop.call_soon(_count_kills, inst.memory)


def _count_kills(gauge: cgroups.MemoryGauge) -> None:
    gauge.kills_seen = gauge.oom_kills()


def _taken(m: Any, fz: FunctionZygote, pool: Any, inst: Instance, host: int, info: str, wrote: bool,
           t0: float) -> Instance:
    inst.pid = host
    if wrote:  # (the limits' write set the cgroup's CPU weight: the function's share, written again)
        m.cpu.join(pool.revision.function, pool.revision.spec.memory, fz.supervisor)
    m.exits.track(host, inst)
    inst.taken(info, (time.perf_counter() - t0) * 1000)
    return inst


def prepare(m: Any, fz: FunctionZygote, conn: socket.socket) -> asyncio.Future[Instance]:
    """An offer came (`FunctionZygote.on_offer`): make the server's handle on the offered child now — its
    Instance attached to the connection, its memory gauge on the zygote's cgroup — so that a start only hands
    it over (the child was given its identity with the offer: `FunctionZygote.named`; the attach alone is a
    turn of the loop). Until taken it belongs to no pool; if the
    child ends unused, its loss is nobody's (`_unowned`) and the offer is dropped as before."""
    inst = _handle(m, fz)
    return asyncio.ensure_future(_attach(inst, conn))


def _handle(m: Any, fz: FunctionZygote) -> Instance:
    inst = Instance("", fz.key, _unowned)
    inst.ready_unawaited()  # (taken, it is ready before its `Ready`; dropped, nobody asks)
    inst.uid = fz.plan.uid
    if m.sandbox.cgroups is not None:  # its forks share the zygote's cgroup
        inst.memory = cgroups.MemoryGauge(cgroup_dir_for(str(m.sandbox.cgroups.memory), fz.supervisor),
                                          m.sandbox.cgroups.version)
    return inst


async def _attach(inst: Instance, conn: socket.socket) -> Instance:
    conn.setblocking(False)
    try:
        await inst.attach(conn)
    except BaseException:
        conn.close()
        if inst.memory is not None:
            inst.memory.close()
        raise
    return inst


def _unowned(inst: Instance) -> None:
    """(An offered child's handle lost before it was taken: no pool counts it.)"""


async def spawn_from_zygote(m: Any, fz: FunctionZygote, ispec: InstanceSpec, theirs: socket.socket,
                            ours: socket.socket) -> int:
    """Fork the instance from its revision's zygote for the connection `theirs` (no offer left, e.g. in a
    burst): its host pid (0 if the zygote failed)."""
    fz.spawning += 1
    try:
        if size_zygote(m, fz, ispec.sandbox) is None:
            return 0
        try:
            # the sandbox is the zygote's, in force already: its forks need not decode the plan again
            pid = await fz.spawn(msgspec.structs.replace(ispec, sandbox=None), theirs)
            ours.send(pid.to_bytes(8, "little"))  # the instance's host pid (for POLYFN_HOST_PID)
            return pid
        except (ZygoteError, OSError) as e:
            log.warning("%s: function zygote failed (%s): starting clean", fz.key, e)
            if m.fzs is not None:
                m.fzs.lost(fz)
            fz.kill()
            return 0
    finally:
        fz.spawning -= 1
