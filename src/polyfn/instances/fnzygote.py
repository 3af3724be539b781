"""Server side of the per-function zygotes (the import cache; the child side is runtimes/python/fnzygote.py).

After a revision's first clean cold start the manager asks the runtime zygote for one more "instance" of
it with `zygote=True`: a sandboxed process that imports the function's module once and then forks an
instance per request. `FunctionZygotes` keeps at most one per revision and decides:

* **build** after a clean start of a revision that has none (never twice at once; a revision whose
  zygote failed — import error, threads or sockets at import — is not retried, and its clean starts
  say why in their init info);
* **evict** an idle one (no instance of its revision in use) when the node's memory budget needs room,
  least recently used first, and **drop** it when its revision is replaced or deleted;
* a zygote that **dies** is forgotten; the next clean start of its revision builds a new one.

Pids: the zygote and its instances live in the function's pid namespace; what the zygote reports is
never used to signal anything. The host pid of an instance is looked up in /proc among the zygote's own
children (`NSpid`), so a lying zygote can at worst confuse its own function.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from polyfn.instances.instance import State
from polyfn.instances.procfs import children, ns_pid, rss_kb
from polyfn.instances.zygote import ZygoteClient, ZygoteError
from polyfn.protocol.zygote import PACKET_MAX, Take, Took

log = logging.getLogger("polyfn.fnzygote")

#: seconds between the clean start that asks for a zygote and its build (see `FunctionZygotes._build`)
BUILD_DELAY = 0.25
#: seconds between taking a zygote's offered child and asking it for the next (`FunctionZygote.take`)
OFFER_DELAY = 0.02
#: characters of an offer's info kept (the zygote ran user code: what it says is bounded)
INFO_MAX = 500


def oom_kills(cgroup_dir: str, version: int) -> int:
    """The cgroup's count of OOM kills so far (its instances share it: a rise means one was OOM-killed)."""
    try:
        with open(os.path.join(cgroup_dir, "memory.oom_control" if version == 1 else "memory.events")) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
    except (OSError, ValueError):
        pass
    return 0


def find_host_pid(parents: list[int], inner: int, depth: int = 1) -> int:
    """The host pid of the process known as `inner` in its namespace, among `parents` and their
    descendants down to `depth` levels; 0 if none. Each level is searched from its end (/proc lists children
    oldest first): in a burst of 200 forks the new child is found with one read of /proc, not ~100."""
    level = list(parents)
    for _ in range(depth + 1):
        for pid in reversed(level):  # newest first: the child looked for was usually forked last
            if ns_pid(pid) == inner:
                return pid
        level = [c for p in level for c in children(p)]
    return 0


class FunctionZygote(ZygoteClient):
    """One revision's zygote: the runtime zygote's protocol on the channel it was started with."""

    def __init__(self, key: str, sock: socket.socket, supervisor: int, on_lost: Callable[[FunctionZygote], None],
                 on_exit: Callable[[int, int, FunctionZygote], None]):
        super().__init__(f"function {key}", Path(os.devnull), self._exited)
        self.key = key
        self.supervisor = supervisor  # host pid the runtime zygote reported: killing it ends the namespace
        self.worker = 0  # host pid of the zygote process itself (after ready)
        self.host: dict[int, int] = {}  # instance pid in the namespace → host pid
        self.instances = 0  # live instances forked from it
        self.spawning = 0  # starts between sizing its cgroup and counting their instance (InstanceManager)
        self.high_water = 1  # processes its cgroup's limits were last sized for (the zygote + instances)
        self.import_ms = 0.0
        self.last_used = time.monotonic()
        self.oom_seen = 0
        self.memory_mb = 0  # what it reserves in the node's memory budget: its RSS once ready
        self._on_lost = on_lost
        self._on_instance_exit = on_exit
        #: the pre-forked child the zygote offers: (its pid in the namespace, its host pid or 0 while the
        #: zygote's own host pid is unknown, our end of its connection, the info its Ready will bring); see `take`
        self.offer: tuple[int, int, socket.socket, str] | None = None
        self.plan: Any = None  # the sandbox plan it was built with (its uid, its per-instance cgroup limits)
        #: called with our end of an offered child's connection as the offer comes: the server's handle on it
        #: made ahead (fnstart.prepare: an attached Instance, as a future), so a start only writes `Take`
        self.on_offer: Callable[[socket.socket], asyncio.Future[Any]] | None = None
        self.prepared: asyncio.Future[Any] | None = None  # (once made, it owns the offer's connection)
        #: a new instance id (`InstanceManager`): the offered child is given its identity as the offer comes
        #: (`Take` written then, see `_offered`), so a start has nothing left to tell it
        self.name_instance: Callable[[], str] | None = None
        self.named = ""  # the id the offered child was given, "" while it waits for `Take`
        self.sock = sock
        sock.setblocking(False)
        self.loop = asyncio.get_running_loop()  # (kept: get_running_loop() is a getpid() system call each time)
        self._ready = self.loop.create_future()
        self.loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def alive(self) -> bool:
        return self.sock is not None

    async def wait_ready(self, timeout: float) -> None:
        assert self._ready is not None
        ready = await asyncio.wait_for(self._ready, timeout)
        self.import_ms = ready.preload_ms
        self.worker = find_host_pid([self.supervisor], ready.pid, depth=2)
        if not self.worker:
            raise ZygoteError(f"function zygote {self.key}: its process was not found under pid {self.supervisor}")
        self.memory_mb = max(1, -(-rss_kb(self.worker) // 1024))

    def name_offer(self) -> None:
        """Name the offered child now if it is not: the first offer comes before the zygote's `Ready`, its host
        pid unknown then. A deploy does (`InstanceManager.built_at_deploy`); a zygote built after a clean start
        does not: its first offer is named when taken, pipelined with the call."""
        if self.offer is not None and not self.named and self.worker:
            self._name_offer()

    async def offer_ready(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until the named offered child has answered its `Take`: rehearsed and
        named, it then waits for its first `Invoke` like an idle instance (`InstanceManager.first_offer_ready`).
        False when there is no such child or it did not answer in time."""
        prepared = self.prepared
        if prepared is None or not self.named:
            return False

        async def answered() -> None:
            handle = await asyncio.shield(prepared)
            await handle.ready_seen()

        try:
            await asyncio.wait_for(answered(), timeout)
        except Exception:  # (gone, or slow: the start takes it, or forks, as before)
            return False
        return True

    async def start(self) -> None:
        raise ZygoteError(f"the function zygote of {self.key} is gone")

    def _recv(self) -> tuple[bytes, list[int]]:
        data, fds, _, _ = socket.recv_fds(self.sock, PACKET_MAX, 1)  # type: ignore[arg-type]
        return data, fds

    def _offered(self, inner: int, fds: list[int], info: str) -> None:
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return
        self._drop_offer()
        self.offer = (inner, 0, socket.socket(fileno=fds[0]), info[:INFO_MAX])
        if self.worker:
            self._name_offer()
        if self.on_offer is not None:
            self.prepared = self.on_offer(self.offer[2])

    def _name_offer(self) -> None:
        """Give the offered child its identity now (`Take`, with its host pid): it answers `Ready` while it
        waits, and a start has nothing left to tell it. Only once the zygote's own host pid is known (its
        children are looked up under it): the first offer comes before the zygote's `Ready`, and is named
        by a deploy (`name_offer`) or when taken. Nothing else is written on the connection before it is taken."""
        assert self.offer is not None
        inner, _, conn, info = self.offer
        host = find_host_pid(children(self.worker), inner, depth=0)
        self.offer = (inner, host, conn, info)
        if host and self.name_instance is not None:
            iid = self.name_instance()
            try:
                conn.sendall(self._take_frame(iid, host))
                self.named = iid
            except OSError:  # (it is gone: its offer is dropped when the zygote reports its exit)
                pass

    def _drop_offer(self) -> None:
        if self.offer is not None:
            if self.prepared is not None:  # (its handle owns the connection: it closes it)
                self.prepared.add_done_callback(_discard)
                self.prepared = None
            else:
                self.offer[2].close()
            self.offer = None
            self.named = ""

    def _take_frame(self, instance_id: str, host: int) -> bytes:
        body = self._enc.encode(Take(instance_id, host))
        return len(body).to_bytes(4, "little") + body

    def take(self, instance_id: str) -> tuple[int, socket.socket, str, Any, str] | None:
        """Start the offered child as an instance: (its host pid, our end of its connection, the info its Ready
        will bring, the handle `on_offer` made for it or None, its instance id), or None without an offer (then
        `spawn`). No round trip: the child was given its identity as the offer came (`named`: it waits for its
        first `Invoke` like an idle instance), or reads `Take` (as `instance_id`) now, and the first `Invoke`
        may follow at once; the zygote hears `Took` so it forks the next offer. A `Take` written now is held on
        the handle (`Instance.hold`): a call handed the instance in this turn of the loop writes its `Invoke`
        with it, in one write."""
        offer, self.offer = self.offer, None
        prepared, self.prepared = self.prepared, None
        named, self.named = self.named, ""
        if offer is None or self.sock is None:
            if prepared is not None:
                prepared.add_done_callback(_discard)
            return None
        inner, host, conn, info = offer
        handle = None
        if prepared is not None:
            if prepared.done() and not prepared.cancelled() and prepared.exception() is None:
                handle = prepared.result()
            else:  # (still being made, or failed: dropped, and this start forks on demand)
                prepared.add_done_callback(_discard)
                return None
        if not host:
            host = find_host_pid(children(self.worker), inner, depth=0)
        try:
            if not host:
                raise OSError("offered child not found")
            if named:
                instance_id = named
                if handle is not None and handle.state is State.DEAD:
                    raise OSError("offered child's connection closed")
            elif handle is None:
                conn.sendall(self._take_frame(instance_id, host))  # (a dead child's handle closed it: EBADF)
            elif not handle.hold(self._take_frame(instance_id, host)):
                raise OSError("offered child's connection closed")
        except OSError:
            if handle is not None:
                _drop(handle)
            else:
                conn.close()
            return None
        # The next offer is forked once this start is served: a fork now would compete with it for the CPU
        self.loop.call_later(OFFER_DELAY, self._took, inner)
        self.host[inner] = host
        self.instances += 1
        self.last_used = time.monotonic()
        return host, conn, info, handle, instance_id

    async def spawn(self, spec: msgspec.Struct, conn: socket.socket) -> int:
        inner = await super().spawn(spec, conn)
        host = find_host_pid(children(self.worker), inner, depth=0)
        if not host:
            raise ZygoteError(f"function zygote {self.key}: instance {inner} not found among its children")
        self.host[inner] = host
        self.instances += 1
        self.last_used = time.monotonic()
        return host

    def _took(self, inner: int) -> None:
        if self.sock is not None:
            try:
                self.sock.send(self._enc.encode(Took(inner)))
            except OSError:  # (channel full: the zygote offers again when this child ends; spawns still work)
                pass

    def _exited(self, inner: int, status: int) -> None:
        if self.offer is not None and self.offer[0] == inner:  # the offered child died unused
            self._drop_offer()
        host = self.host.pop(inner, 0)
        if host:
            self.instances -= 1
            self._on_instance_exit(host, status, self)

    def _lost(self) -> None:
        was = self.sock is not None
        self._drop_offer()
        super()._lost()
        if was:
            self.kill()
            self._on_lost(self)

    def kill(self) -> None:
        """End the zygote and everything in its pid namespace (the supervisor's death takes init with it)."""
        self._drop_offer()
        if self.sock is not None:
            super()._lost()
        try:
            os.kill(self.supervisor, 9)
        except ProcessLookupError:
            pass


def _drop(handle: Any) -> None:
    """Close the server's handle on an offered child that will not be taken (its connection with it)."""
    handle.kill("its offer was dropped")
    if handle.memory is not None:
        handle.memory.close()


def _discard(prepared: asyncio.Future[Any]) -> None:
    if not prepared.cancelled() and prepared.exception() is None:
        _drop(prepared.result())


class FunctionZygotes:
    """The node's function zygotes, one per revision key at most."""

    def __init__(self, manager: Any):
        self.manager = manager
        self.ready: dict[str, FunctionZygote] = {}
        #: revisions whose zygote is being built: the build's outcome (the zygote, or None), for starts to wait on
        self.building: dict[str, asyncio.Future[FunctionZygote | None]] = {}
        self._hurry: dict[str, asyncio.Event] = {}  # a start waits: skip the rest of BUILD_DELAY
        self.failed: dict[str, str] = {}  # revision key → why it has no zygote (reported in init info)
        self.by_supervisor: dict[int, FunctionZygote] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, key: str) -> FunctionZygote | None:
        fz = self.ready.get(key)
        return fz if fz is not None and fz.alive else None

    def want(self, pool: Any, delay: float = BUILD_DELAY) -> None:
        """Build `pool`'s revision's zygote in the background, once: `delay` seconds after a clean start of
        it (see `_build`), at once for a new revision of a function this node serves (`InstanceManager.succeed`)."""
        key = pool.revision.key
        if key in self.ready or key in self.building or key in self.failed or pool.draining:
            return
        if self.manager.reserved_mb() + 64 > self.manager.memory_budget_mb:
            return  # a zygote never evicts anything to be built (64 MB: a generous guess of its size)
        self.building[key] = asyncio.get_running_loop().create_future()
        self._hurry[key] = asyncio.Event()
        t = asyncio.ensure_future(self._build(pool, delay))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def wait_built(self, key: str, timeout: float) -> FunctionZygote | None:
        """A start of a revision whose zygote is being built: the zygote once built (None if the build
        fails or takes longer than `timeout`; the start is then a clean one). Waiting costs less than a
        clean start beside the build (both an import, on the same CPUs), and every start after it forks."""
        fut = self.building.get(key)
        if fut is None:
            return self.get(key)
        hurry = self._hurry.get(key)
        if hurry is not None:
            hurry.set()
        try:
            fz = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None
        return fz if fz is not None and fz.alive else None

    async def _build(self, pool: Any, delay: float) -> None:
        key = pool.revision.key
        fz: FunctionZygote | None = None
        built: FunctionZygote | None = None
        try:
            # Not at once after a clean start: it is about to serve its first invocation, and on a small
            # machine an import running beside it doubles that cold start (measured: 6.0 → 8.5 ms p50).
            # A start that waits for this zygote cuts the delay short (`wait_built`).
            if delay > 0:
                try:
                    await asyncio.wait_for(self._hurry[key].wait(), delay)
                except TimeoutError:
                    pass
            if pool.draining or pool not in self.manager.pools:
                return
            fz = await self.manager.start_function_zygote(pool, self)
            await fz.wait_ready(max(30.0, self.manager.settings.init_timeout))
        except (ZygoteError, OSError, TimeoutError) as e:
            reason = str(e) or type(e).__name__
            if fz is not None:
                fz.kill()
                self.by_supervisor.pop(fz.supervisor, None)
            if "gone" not in reason:  # not retried for this revision: it cannot be forked safely
                self.failed[key] = reason
            log.info("%s: no function zygote: %s", key, reason)
            return
        finally:
            self._hurry.pop(key, None)
            done = self.building.pop(key, None)
            if fz is not None and fz.alive and not pool.draining and pool in self.manager.pools:
                built = fz
            if done is not None and not done.done():
                done.set_result(built)
        if built is None:
            if fz is not None:
                self._forget(fz)
            return
        self.ready[key] = fz
        log.info("%s: function zygote ready (module imported in %.0f ms)", key, fz.import_ms)

    def _forget(self, fz: FunctionZygote) -> None:
        fz.kill()
        if self.ready.get(fz.key) is fz:
            del self.ready[fz.key]

    def lost(self, fz: FunctionZygote) -> None:
        """The zygote died or closed its channel: forget it (the next clean start rebuilds it)."""
        if self.ready.get(fz.key) is fz:
            del self.ready[fz.key]
            log.info("%s: function zygote lost", fz.key)

    def supervisor_exited(self, pid: int) -> bool:
        fz = self.by_supervisor.pop(pid, None)
        if fz is None:
            return False
        if fz.sock is not None:
            fz._lost()
        return True

    def drop(self, key: str) -> None:
        """The revision is no longer served (replaced or deleted)."""
        fz = self.ready.pop(key, None)
        if fz is not None:
            fz.kill()
        self.failed.pop(key, None)

    def reserved_mb(self) -> int:
        return sum(fz.memory_mb for fz in self.ready.values())

    def evict_idle(self, short: int, busy: set[str]) -> int:
        """Evict zygotes of revisions not in `busy`, least recently used first, until `short` MB are
        freed; returns the MB freed."""
        freed = 0
        for fz in sorted(self.ready.values(), key=lambda z: z.last_used):
            if freed >= short:
                break
            if fz.key in busy:
                continue
            freed += fz.memory_mb
            log.info("%s: function zygote evicted for memory", fz.key)
            self._forget(fz)
        return freed

    def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for fz in list(self.ready.values()):
            fz.kill()
        for fz in list(self.by_supervisor.values()):
            fz.kill()
        self.ready.clear()
        self.by_supervisor.clear()
