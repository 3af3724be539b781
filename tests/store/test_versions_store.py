"""Published versions and aliases (store/versions.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from polyfn.model import FunctionSpec
from polyfn.store import Store
from polyfn.store.versions import Alias, InUse, VersionStore


async def deploy(store: Store, sha: str, timeout: float = 3.0, name: str = "fn") -> int:
    rev, _ = await store.create_revision(FunctionSpec(name=name, timeout=timeout), sha, f"/code/{name}/{sha}", None)
    return rev.number


async def test_publish_numbers_and_no_change_returns_the_same_version(store: Store) -> None:
    vs = VersionStore(store)
    assert await vs.publish("nope") is None
    r1 = await deploy(store, "a")
    v1, created = await vs.publish("fn", "first")  # type: ignore[misc]
    assert (v1.number, v1.revision, v1.description, created) == (1, r1, "first", True)
    assert await vs.publish("fn") == (v1, False)  # nothing changed
    await deploy(store, "a")  # a new revision with the same code and spec: still no change
    assert await vs.publish("fn") == (v1, False)
    await deploy(store, "a", timeout=9.0)  # config changed
    v2, created = await vs.publish("fn")  # type: ignore[misc]
    assert (v2.number, created) == (2, True)
    r4 = await deploy(store, "b")
    v3, _ = await vs.publish("fn")  # type: ignore[misc]
    assert (v3.number, v3.revision) == (3, r4)
    assert [v.number for v in await vs.list_versions("fn")] == [1, 2, 3]
    assert await vs.get_version("fn", 2) == v2
    assert await vs.delete_version("fn", 3) == v3
    assert await vs.delete_version("fn", 3) is None
    await deploy(store, "c")
    v4, _ = await vs.publish("fn")  # type: ignore[misc]
    assert v4.number == 4  # numbers are never reused


async def test_aliases_and_deleting_the_function(store: Store) -> None:
    vs = VersionStore(store)
    await deploy(store, "a")
    await vs.publish("fn")
    await deploy(store, "b")
    await vs.publish("fn")
    prod = Alias(function="fn", name="prod", version="1", weights={"2": 0.25}, description="d")
    assert await vs.create_alias(prod) is True
    assert await vs.create_alias(Alias(function="fn", name="prod", version="2")) is False
    got = await vs.get_alias("fn", "prod")
    assert got is not None and (got.version, got.weights, got.description) == ("1", {"2": 0.25}, "d")
    with pytest.raises(InUse):
        await vs.delete_version("fn", 2)  # the alias's weighted version
    got.version, got.weights = "2", {}
    assert await vs.update_alias(got) is True
    assert (await vs.get_alias("fn", "prod")).version == "2"  # type: ignore[union-attr]
    assert await vs.delete_version("fn", 1) is not None
    assert await vs.update_alias(Alias(function="fn", name="nope", version="2")) is False
    await vs.create_alias(Alias(function="fn", name="dev", version="$LATEST"))
    assert [a.name for a in await vs.list_aliases("fn")] == ["dev", "prod"]
    assert await vs.delete_alias("fn", "dev") is True
    assert await vs.delete_alias("fn", "dev") is False

    assert await store.delete_function("fn") is not None
    assert await vs.list_versions("fn") == [] and await vs.list_aliases("fn") == []
    await deploy(store, "z")
    v, _ = await vs.publish("fn")  # type: ignore[misc]
    assert v.number == 1  # a new function of the same name starts again
