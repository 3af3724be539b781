"""ClusterSync's decisions against a real store (SQLite and PostgreSQL): which revision a node swaps in,
what it removes, and the races with deploys that happen while a pass runs. The registry and deployer are
small stand-ins recording what the sync asked of them (the real ones start processes; the e2e test
tests/e2e/test_cluster.py runs the whole thing with three nodes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from polyfn.model import FunctionSpec, Revision
from polyfn.scheduler.sync import ClusterSync
from polyfn.store import Store


class Active:
    def __init__(self, revision: Revision):
        self.revision = revision


class Registry:
    def __init__(self) -> None:
        self.functions: dict[str, Active] = {}

    def get(self, name: str) -> Active | None:
        return self.functions.get(name)

    def activate(self, rev: Revision) -> None:
        self.functions[rev.function] = Active(rev)

    def remove(self, name: str) -> None:
        self.functions.pop(name, None)

    def serving(self) -> dict[str, tuple[int, str]]:
        return {n: (a.revision.number, a.revision.code_sha256) for n, a in self.functions.items()}


class Deployer:
    """`localise` succeeds unless told otherwise; `during` runs inside it (what happens meanwhile)."""

    def __init__(self) -> None:
        self.broken: set[str] = set()
        self.during: Callable[[Revision], Awaitable[None]] | None = None

    async def localise(self, rev: Revision) -> Revision:
        if self.during is not None:
            during, self.during = self.during, None
            await during(rev)
        if rev.code_sha256 in self.broken:
            raise RuntimeError(f"no archive {rev.code_sha256}.zip")
        return rev


async def deploy(store: Store, name: str, sha: str) -> Revision:
    rev, _ = await store.create_revision(FunctionSpec(name=name), sha, f"/elsewhere/{sha}", None)
    return rev


def make(store: Store) -> tuple[ClusterSync, Registry, Deployer]:
    registry, deployer = Registry(), Deployer()
    return ClusterSync(store, registry, deployer, 1.0), registry, deployer  # type: ignore[arg-type]


async def test_follows_deploys_redeploys_and_deletes(store: Store) -> None:
    sync, registry, _ = make(store)
    await deploy(store, "a", "sha1")
    await deploy(store, "b", "shab")
    assert await sync.sync_once() == 2
    assert registry.serving() == {"a": (1, "sha1"), "b": (1, "shab")}
    assert await sync.sync_once() == 0  # nothing changed: nothing done

    await deploy(store, "a", "sha2")
    await store.delete_function("b")
    assert await sync.sync_once() == 2
    assert registry.serving() == {"a": (2, "sha2")}


async def test_a_function_deleted_and_deployed_again_is_not_left_on_its_old_code(store: Store) -> None:
    """Revision numbers start over at 1 after a delete; both happening between two passes must still swap
    the code (a "newer number" rule would keep serving the deleted revision 2)."""
    sync, registry, _ = make(store)
    await deploy(store, "a", "sha1")
    await deploy(store, "a", "sha2")
    await sync.sync_once()
    assert registry.serving() == {"a": (2, "sha2")}
    await store.delete_function("a")
    await deploy(store, "a", "sha3")
    await sync.sync_once()
    assert registry.serving() == {"a": (1, "sha3")}


async def test_a_revision_that_cannot_be_made_local_is_retried_and_reported(store: Store) -> None:
    sync, registry, deployer = make(store)
    await deploy(store, "a", "sha1")
    await sync.sync_once()
    await deploy(store, "a", "sha2")
    deployer.broken.add("sha2")
    assert await sync.sync_once() == 0
    assert registry.serving() == {"a": (1, "sha1")}  # the previous revision keeps serving
    assert list(sync.failing) == ["a@2"] and "sha2.zip" in sync.failing["a@2"]
    deployer.broken.clear()
    assert await sync.sync_once() == 1
    assert registry.serving() == {"a": (2, "sha2")} and sync.failing == {}


async def test_a_deploy_during_the_pass_is_neither_undone_nor_overtaken(store: Store) -> None:
    sync, registry, deployer = make(store)
    await deploy(store, "a", "sha1")

    async def meanwhile(rev: Revision) -> None:
        # While `a@1` is made local: `a` gets revision 2 elsewhere, and `late` is deployed on this node.
        await deploy(store, "a", "sha2")
        registry.activate(await deploy(store, "late", "shal"))

    deployer.during = meanwhile
    await sync.sync_once()
    # a@1 is no longer current: not swapped in; `late` was not in the pass's list, but exists: kept.
    assert registry.serving() == {"late": (1, "shal")}
    await sync.sync_once()
    assert registry.serving() == {"a": (2, "sha2"), "late": (1, "shal")}


async def test_revisions_are_compared_by_identity(store: Store) -> None:
    """A node's registry holds what `create_revision` returned; the sync reads the same revision back from
    the database: they must compare equal (no swap of a revision for itself)."""
    sync, registry, _ = make(store)
    registry.activate(await deploy(store, "a", "sha1"))
    assert await sync.sync_once() == 0
