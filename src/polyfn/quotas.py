"""Namespace quotas as admission steps (tenancy.py holds their names and limits).

Each check answers None (admitted) or the refusal: `QuotaExceeded`, a 429 `quota_exceeded` naming the quota, its
limit and the namespace's current use (and `Retry-After` where waiting helps). Where each is checked:

* `functions`: a deploy that would make a new function (`check_create`, the deployer's one path for every face);
* `instances`, `memory_mb`: each instance start (`room`, asked by the instance manager before the node's memory
  budget; the namespace's own idle instances are evicted first, least recently used) — so a namespace at its
  memory quota waits on its own instances and never takes the node's memory from another's cold starts;
* `invocations_per_second`: each call's admission (`admit`, the invoker's), a token bucket per namespace;
* `async_backlog`: each async call accepted (`admit_async`; the count read at most once a second while it admits).

In a cluster (`cluster`: quota_share.ClusterUse) the instances and memory the other nodes use are added before
each start, and the rate is shared out among the nodes serving the namespace's calls (quota_share.py says how
exact that is).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from polyfn.deploy.errors import DeployError
from polyfn.instances.instance import State
from polyfn.queue.dispatcher import Rejected
from polyfn.quota_share import NONE, Use
from polyfn.scheduler.pool import Throttled
from polyfn.tenancy import SEP, namespace_of, owns

QUOTA = "quota"  # the shed reason of a call refused by a namespace quota (metrics)
ACTIVE_S = 5.0  # a node serves a namespace's calls (shares its rate quota) this long after its last attempt
BACKLOG_FRESH = 1.0  # seconds an async backlog count read may admit further jobs (`admit_async`)


class QuotaExceeded(Throttled):
    status = 429
    code = "quota_exceeded"

    def __init__(self, namespace: str, quota: str, limit: float, used: float, retry_after: int = 1,
                 note: str = ""):
        super().__init__(f"namespace {namespace!r} is at its {quota} quota: {used:g} used of {limit:g}" + note
                         + (", retry later" if retry_after else ""), retry_after, QUOTA)
        self.extra = {"namespace": namespace, "quota": quota, "limit": limit, "used": used}


class QuotaGuard:
    """`quotas(namespace) -> tenancy.Quotas` (cached by the namespaces service); `pools()`: the node's pools;
    `limiter`: the node's token buckets; `functions(namespace)`: its functions (awaitable); `backlog(namespace)`:
    its async jobs not yet finished (awaitable)."""

    def __init__(self, quotas: Callable[[str], Any], pools: Callable[[], Any], limiter: Any,
                 functions: Callable[[str], Any], backlog: Callable[[str], Any] | None = None,
                 rated: Callable[[], frozenset[str]] = frozenset, clock: Callable[[], float] = time.monotonic):
        self.quotas = quotas
        self.rated = rated  # the namespaces with a rate quota (the common case, none, costs one call per call)
        self.pools = pools
        self.limiter = limiter
        self.functions = functions
        self.backlog = backlog
        self.clock = clock
        self._rate: dict[str, list[float]] = {}  # namespace → [second, calls admitted in it]
        self._backlogs: dict[str, list[float]] = {}  # namespace → [when its backlog was read, read + admitted since]
        self.cluster: Any = None  # quota_share.ClusterUse on a node of a cluster (set by the Node)

    def admit(self, function: str) -> QuotaExceeded | None:
        """A call of `function`: within its namespace's invocations per second?"""
        rated = self.rated()
        if not rated:
            return None
        ns = namespace_of(function) if SEP in function else "default"
        if ns not in rated:
            return None
        rate = self.quotas(ns).invocations_per_second
        if rate is None:
            return None
        now = self.clock()
        seen = self._rate.get(ns)
        if seen is None or seen[0] != int(now):
            if self.cluster is not None and (seen is None or now - seen[0] > ACTIVE_S):
                self.cluster.poke()  # (this node starts serving the namespace: the others take note soon)
            seen = self._rate[ns] = [int(now), 0]
        share, note = rate, ""
        if self.cluster is not None and (nodes := self.cluster.serving(ns)) > 1:  # this node's part of it
            share, note = rate / nodes, f" in the cluster (this node's share: {rate / nodes:g}/s of {nodes} nodes)"
        wait = self.limiter.check("ns:" + ns, share, max(1.0, share), now) if rate > 0 else 1
        if wait:
            return QuotaExceeded(ns, "invocations_per_second", rate, seen[1], max(1, int(wait + 0.999)), note)
        seen[1] += 1
        return None

    def rate_used(self, namespace: str) -> int:
        """Calls admitted in the current second (of a namespace with a rate quota; 0 otherwise)."""
        seen = self._rate.get(namespace)
        return seen[1] if seen is not None and seen[0] == int(self.clock()) else 0

    def room(self, pool: Any) -> QuotaExceeded | None:
        """One more instance of `pool`: within its namespace's instances and memory quotas? The namespace's own
        idle instances (of other revisions) are evicted, least recently used first, to make room."""
        ns = namespace_of(pool.revision.function)
        q = self.quotas(ns)
        if q.instances is None and q.memory_mb is None:
            return None
        need = pool.revision.spec.memory
        mine = [p for p in self.pools() if owns(ns, p.revision.function)]
        others = self.cluster.others.get(ns, NONE) if self.cluster is not None else NONE

        def use() -> tuple[int, int]:
            n, mem = others[0], others[1]  # (the other nodes of a cluster: as they last published it)
            for p in mine:
                live = _live(p)
                n += live
                mem += live * p.revision.spec.memory
            return n, mem

        def over(n: int, mem: int) -> bool:
            return (q.instances is not None and n + 1 > q.instances) or (
                q.memory_mb is not None and mem + need > q.memory_mb)

        n, mem = use()
        if over(n, mem):
            idle = sorted(((i.last_used, i, p) for p in mine if p is not pool for i in _idle(p)),
                          key=lambda t: t[0])
            for _, inst, p in idle:
                p.evict_one(inst)
                n, mem = use()
                if not over(n, mem):
                    break
        refused = None
        if q.instances is not None and n + 1 > q.instances:
            refused = QuotaExceeded(ns, "instances", q.instances, n)
        elif q.memory_mb is not None and mem + need > q.memory_mb:
            refused = QuotaExceeded(ns, "memory_mb", q.memory_mb, mem)
        if self.cluster is not None:
            if refused is None:
                self.cluster.poke()  # (the others learn of this start soon)
            elif others[2]:
                self.cluster.want(ns)  # other nodes hold idle instances of it: ask them to let go
        return refused

    def local_use(self) -> dict[str, Use]:
        """This node's `{namespace: (live instances, their memory in MB, idle instances, serving its calls: 1
        or 0)}` for the namespaces with an instances, memory or rate quota: what it publishes to the other nodes
        of a cluster (quota_share.py)."""
        out: dict[str, Use] = {}
        for p in self.pools():
            live = _live(p)
            if live:
                ns = namespace_of(p.revision.function)
                q = self.quotas(ns)
                if q.instances is None and q.memory_mb is None:
                    continue  # (only what a quota checks is published)
                n, mem, idle, _ = out.get(ns, NONE)
                out[ns] = (n + live, mem + live * p.revision.spec.memory, idle + len(_idle(p)), 0)
        now = self.clock()
        for ns, seen in list(self._rate.items()):
            if now - seen[0] <= ACTIVE_S:
                out[ns] = (*out.get(ns, NONE)[:3], 1)
            else:
                del self._rate[ns]  # (its next call counts as starting to serve it again)
        return out

    def release(self, ns: str) -> None:
        """Evict this node's idle instances of namespace `ns` (another node of the cluster was refused a start
        of it)."""
        for p in self.pools():
            if owns(ns, p.revision.function):
                for inst in _idle(p):
                    p.evict_one(inst)

    async def check_create(self, function: str) -> None:
        """A deploy that makes `function` (a held name): within its namespace's functions quota? Raises."""
        ns = namespace_of(function)
        limit = self.quotas(ns).functions
        if limit is None:
            return
        have = len(await self.functions(ns))
        if have + 1 > limit:
            e = QuotaExceeded(ns, "functions", limit, have, retry_after=0)
            raise DeployError(e.code, str(e), 429, e.extra)

    async def admit_async(self, function: str) -> None:
        """An async call of `function` accepted: within its namespace's async backlog? Raises.

        The backlog is read (`backlog`: a count of the queue file's jobs, and on the cluster's stream a request
        to NATS per function) at most every BACKLOG_FRESH seconds per namespace while it admits: in between, the
        count read plus the jobs admitted here since — never less than this node's share of the backlog, as
        finished jobs are not taken off — admits without asking. A refusal is only ever given on a count just
        read. (Read at every accepted job, it cost each a queue count or, on the stream, a NATS round trip per
        function of the node.) On a cluster the other nodes' jobs of that second are seen at the next read."""
        ns = namespace_of(function)
        limit = self.quotas(ns).async_backlog
        if limit is None or self.backlog is None:
            return
        now = self.clock()
        seen = self._backlogs.get(ns)
        if seen is not None and now - seen[0] < BACKLOG_FRESH and seen[1] + 1 <= limit:
            seen[1] += 1
            return
        have = await self.backlog(ns)
        if have + 1 > limit:
            self._backlogs.pop(ns, None)
            e = QuotaExceeded(ns, "async_backlog", limit, have, retry_after=5)
            raise Rejected(429, e.code, str(e), {"retry-after": "5"}, e.extra)
        if len(self._backlogs) > 10_000:
            self._backlogs.clear()
        self._backlogs[ns] = [now, have + 1]


def _live(pool: Any) -> int:
    """A pool's live instances: starting or ready (idle or busy)."""
    return int(pool.starting + sum(1 for i in pool.instances if i.state is State.READY))


def _idle(pool: Any) -> list[Any]:
    return [i for i in pool.idle if i.inflight == 0 and i.state is State.READY]
