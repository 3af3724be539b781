"""The namespaces service: which exist (cached for the edges' checks), create, quotas, delete.

Names and the rules are in `tenancy.py` (pure); rows in `store/namespaces.py`; the API in `api/namespaces.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from polyfn.errors import PolyfnError
from polyfn.store.namespaces import Namespace, NamespaceStore
from polyfn.tenancy import DEFAULT, STORED, NamespaceError, Quotas, local, owns, parse_quotas, validate

NO_QUOTAS = Quotas()
RELOAD_S = 2.0  # the cached set of names is read again at most this often (another node may have made one)


class Namespaces:
    def __init__(self, store: NamespaceStore, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self._names: set[str] = {DEFAULT}
        self._quotas: dict[str, Quotas] = {}
        self.rated: frozenset[str] = frozenset()  # namespaces with an invocations_per_second quota
        self._loaded = -1e9

    async def load(self) -> None:
        found = await self.store.list()
        self._names = {n.name for n in found}
        self._quotas = {n.name: n.quotas for n in found}
        self.rated = frozenset(n.name for n in found if n.quotas.invocations_per_second is not None)
        self._loaded = time.monotonic()

    async def exists(self, name: str) -> bool:
        if name == DEFAULT:
            return True
        if name not in self._names or time.monotonic() - self._loaded > RELOAD_S:
            if time.monotonic() - self._loaded > 0.5:
                await self.load()
        return name in self._names

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
        await self.load()
        return ns

    async def set_quotas(self, name: str, quotas: Any) -> Namespace:
        ns = await self.get(name)
        try:
            q = parse_quotas(quotas, ns.quotas)
        except NamespaceError as e:
            raise PolyfnError(400, e.code, str(e)) from None
        await self.store.set_quotas(name, q, self.clock())
        await self.load()
        return await self.get(name)

    async def forget(self, name: str) -> bool:
        ok = await self.store.delete(name)
        await self.load()
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
        self.owned: list[Any] = []  # more owners of a namespace's things: `.forget_namespace(name)` each
        self.rate: Callable[[str], int] | None = None  # calls admitted this second (quotas.QuotaGuard.rate_used)
        self.held: Callable[[str], Any] | None = None  # bytes and items it holds (namespace_use.NamespaceUse.held)

    async def functions(self, name: str) -> list[Any]:
        return await self.store.list_functions(name)

    def live(self, name: str) -> tuple[int, int, int]:
        """(instances, their memory in MB, invocations running or waiting) of the namespace on this node."""
        instances = memory = busy = 0
        for fname in list(self.registry.functions):
            if not owns(name, fname):
                continue
            for a in self.registry.all_of(fname):
                st = a.pool.stats()
                n = st["starting"] + st["idle"] + st["busy"]
                instances += n
                memory += n * a.revision.spec.memory
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
        if (busy or backlog) and not force:
            raise PolyfnError(409, "namespace_busy", f"namespace {name!r} has {busy} invocation(s) running or "
                              f"waiting and {backlog} queued: retry when they end, or delete with force=true "
                              "(`polyfn ns delete --force`): running ones then finish, or stop at their timeout")
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
