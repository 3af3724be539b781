"""The namespaces service: which exist (cached for the edges' checks), create, quotas, delete.

Names and the rules are in `tenancy.py` (pure); rows in `store/namespaces.py`; the API in `api/namespaces.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from polyfn import loops
from polyfn.errors import PolyfnError
from polyfn.store.namespaces import Namespace, NamespaceStore
from polyfn.tenancy import DEFAULT, STORED, NamespaceError, Quotas, local, owns, parse_quotas, validate

NO_QUOTAS = Quotas()
RELOAD_S = 2.0  # the cached set of names is checked again at most this often (another node may have changed one)
log = logging.getLogger("polyfn.namespaces")


class Namespaces:
    def __init__(self, store: NamespaceStore, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self._names: set[str] = {DEFAULT}
        self._quotas: dict[str, Quotas] = {}
        self.rated: frozenset[str] = frozenset()  # namespaces with an invocations_per_second quota
        self._loaded = -1e9
        self._signature: tuple[int, float] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._gen = 0  # bumped by each change made here: a load that read before it does not overwrite it

    async def load(self) -> None:
        gen = self._gen
        signature = await self.store.signature() if hasattr(self.store, "signature") else None
        found = await self.store.list()
        if gen != self._gen:  # changed here while reading: what was read may miss it; the next check reads again
            return
        self._signature = signature
        self._names = {n.name for n in found}
        self._quotas = {n.name: n.quotas for n in found}
        self._rated()
        self._loaded = time.monotonic()

    def _keep(self, name: str, quotas: Quotas | None) -> None:
        """A change made here, in the cache at once (other nodes' changes arrive within RELOAD_S)."""
        self._gen += 1
        if quotas is None:
            self._names.discard(name)
            self._quotas.pop(name, None)
        else:
            self._names.add(name)
            self._quotas[name] = quotas
        self._rated()

    def _rated(self) -> None:
        self.rated = frozenset(n for n, q in self._quotas.items() if q.invocations_per_second is not None)

    async def _check(self) -> None:
        """Read every namespace again only when the table changed (rows or newest change): a node with a
        thousand namespaces does not parse them all every RELOAD_S."""
        try:
            sig = await self.store.signature() if hasattr(self.store, "signature") else None
            if sig is None or sig != self._signature:
                await self.load()
            else:
                self._loaded = time.monotonic()
        except Exception:  # (the next check tries again; the cache stays as it was)
            log.exception("namespaces: checking for changes")
        finally:
            self._refresh = None

    async def exists(self, name: str) -> bool:
        """Whether namespace `name` exists. A known one answers from the cache (checked for changes in the
        background at most every RELOAD_S); an unknown one is looked up in the store (one row: another node may
        have just made it)."""
        if name == DEFAULT:
            return True
        if name in self._names:
            if time.monotonic() - self._loaded > RELOAD_S and self._refresh is None:
                self._refresh = asyncio.create_task(self._check())
            return True
        found = await self.store.get(name)
        if found is None:
            return False
        if name not in self._names:
            self._keep(name, found.quotas)
        return True

    async def close(self) -> None:
        task, self._refresh = self._refresh, None
        await loops.cancelled(task)

    def names(self) -> list[str]:
        """The namespaces known here (cached; `load` re-reads them)."""
        return sorted(self._names)

    def quotas(self, name: str) -> Quotas:
        """The cached quotas of a namespace (no limits when none are set)."""
        return self._quotas.get(name) or NO_QUOTAS

    async def get(self, name: str) -> Namespace:
        found = await self.store.get(name)
        if found is None:
            raise not_found(name)
        return found

    async def list(self) -> list[Namespace]:
        return await self.store.list()

    async def create(self, name: Any, quotas: Any = None, description: str = "") -> Namespace:
        try:
            validate(name)
            q = parse_quotas(quotas if quotas is not None else {})
        except NamespaceError as e:
            raise PolyfnError(400, e.code, str(e)) from None
        if name == DEFAULT:
            raise PolyfnError(409, "namespace_exists", "namespace 'default' always exists")
        now = self.clock()
        ns = Namespace(name=name, quotas=q, description=str(description)[:500], created_at=now, updated_at=now)
        if not await self.store.create(ns):
            raise PolyfnError(409, "namespace_exists", f"namespace {name!r} exists")
        self._keep(name, q)  # (this node's cache at once; other nodes check within RELOAD_S)
        return ns

    async def set_quotas(self, name: str, quotas: Any) -> Namespace:
        ns = await self.get(name)
        try:
            q = parse_quotas(quotas, ns.quotas)
        except NamespaceError as e:
            raise PolyfnError(400, e.code, str(e)) from None
        await self.store.set_quotas(name, q, self.clock())
        self._keep(name, q)
        return await self.get(name)

    async def forget(self, name: str) -> bool:
        ok = await self.store.delete(name)
        self._keep(name, None)
        return ok


def not_found(name: str) -> PolyfnError:
    """What every API answers for a namespace that does not exist or that the caller may not see (the same)."""
    return PolyfnError(404, "namespace_not_found", f"namespace {name!r} does not exist")


class TenancyOps:
    """What a namespace uses against its quotas (`describe`) and deleting one with everything it owns (`delete`).
    Receives the narrow services it reads and the node's own delete of a function."""

    def __init__(self, namespaces: Namespaces, store: Any, registry: Any, keys: Any,
                 delete_function: Callable[[str], Any], queue: Any = None):
        self.namespaces = namespaces
        self.store = store  # FunctionStore
        self.registry = registry  # LiveFunctions
        self.keys = keys  # KeyRing
        self.delete_function = delete_function
        self.queue = queue  # AsyncQueue: the async backlog
        self.owned: list[Any] = []  # more owners of a namespace's things: `.forget_namespace(name)` each (and
        # `.busy(name)`: how many of its things run, which a delete without force refuses over)
        self.rate: Callable[[str], int] | None = None  # calls admitted this second (quotas.QuotaGuard.rate_used)
        self.held: Callable[[str], Any] | None = None  # bytes and items it holds (namespace_use.NamespaceUse.held)
        self.cluster: Any = None  # quota_share.ClusterUse on a node of a cluster: the other nodes' instances

    async def functions(self, name: str) -> list[Any]:
        return await self.store.list_functions(name)

    def live(self, name: str) -> tuple[int, int, int]:
        """(instances, their memory in MB, invocations running or waiting) of the namespace on this node: over the
        manager's awake pools (every pool with an instance, a start or a caller is one), not every function."""
        instances = memory = busy = 0
        for pool in list(self.registry.manager.awake):
            if pool.draining or not owns(name, pool.revision.function):
                continue
            st = pool.stats()
            n = st["starting"] + st["idle"] + st["busy"]
            instances += n
            memory += n * pool.revision.spec.memory
            busy += st["busy"] + st["queued"]
        return instances, memory, busy

    async def backlog(self, name: str) -> int:
        if self.queue is None:
            return 0
        found, _dead = await self.queue.backlog()
        return sum(n for f, n in found.items() if owns(name, f))

    async def describe(self, name: str) -> dict[str, Any]:
        """Use against every quota: `{quota: {"limit", "used"}}` (limit None: unlimited)."""
        q = self.namespaces.quotas(name)
        instances, memory, _busy = self.live(name)
        if self.cluster is not None:  # (the whole cluster's, as the other nodes last published it)
            others = self.cluster.others.get(name, (0, 0, 0, 0))
            instances, memory = instances + others[0], memory + others[1]
        used = {"functions": len(await self.functions(name)), "instances": instances, "memory_mb": memory,
                "invocations_per_second": self.rate(name) if self.rate is not None else None,
                "async_backlog": await self.backlog(name)}
        if self.held is not None:
            held = await self.held(name)
            used.update({k: held[k] for k in STORED})
        return {k: {"limit": getattr(q, k), "used": used[k]} for k in used}

    async def delete(self, name: str, force: bool = False) -> dict[str, Any]:
        """Delete namespace `name` and what it owns: functions (their code, triggers, instance keys, queued
        jobs), its keys, and what `owned` services hold (buckets, tables). Refused (409 `namespace_busy`) while
        any of its invocations run or wait, unless `force`."""
        funcs = await self.functions(name)
        _inst, _mem, busy = self.live(name)
        backlog = await self.backlog(name)
        running = 0
        for owner in self.owned:
            if hasattr(owner, "busy"):
                running += await owner.busy(name)
        if (busy or backlog or running) and not force:
            raise PolyfnError(409, "namespace_busy", f"namespace {name!r} has {busy} invocation(s) running or "
                              f"waiting, {backlog} queued and {running} workflow execution(s) running: retry when "
                              "they end, or delete with force=true (`polyfn ns delete --force`): running invocations "
                              "then finish, or stop at their timeout; running executions are stopped")
        for info in funcs:
            await self.delete_function(info.name)
        revoked = 0
        for k in await self.keys.list():
            if getattr(k, "namespace", DEFAULT) == name and k.revoked_at is None:
                revoked += bool(await self.keys.revoke(k.id))
        extra: dict[str, Any] = {}
        for owner in self.owned:
            extra.update(await owner.forget_namespace(name))
        await self.namespaces.forget(name)
        return {"deleted": name, "functions": [local(i.name) for i in funcs], "keys_revoked": revoked, **extra}
