"""The rolling-upgrade rule (store/schema.py): when a node migrates, runs as is, or refuses with one line —
table-driven over a small migration chain, then the real chain's marks, then the rule applied by
`Store.open` against PostgreSQL (a database at an old schema with an old node connected; a database
migrated by a "newer polyfn")."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from polyfn.store import Store
from polyfn.store.engine import MIGRATIONS_DIR, application_name
from polyfn.store.schema import Migration, SchemaMismatch, chain, floor_of, plan, read_graph, schemas_in

# a → b → c(incompatible: nodes of b break) → d
GRAPH = {m.revision: m for m in (Migration("a", None), Migration("b", "a"), Migration("c", "b", compatible=False),
                                 Migration("d", "c"))}

@pytest.fixture
def pg_url(pg_database: str) -> str:
    """An empty PostgreSQL database (the session's, its schema reset)."""
    from .conftest import _dsn_for, _pg_execute, _run

    dsn = _dsn_for(pg_database)
    _run(lambda: _pg_execute(dsn, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


CASES = [
    # (database at, its floor, live nodes' schemas) → action, a word the message must hold
    ({"d"}, "c", {"b"}, "current", ""),  # at head: nothing to decide (old nodes were let in by their own rule)
    (set(), None, set(), "migrate", ""),  # a new database
    ({"b"}, "a", set(), "migrate", ""),  # nobody else runs: any migration goes
    ({"b"}, "a", {"d"}, "migrate", ""),  # only new nodes run
    ({"c"}, "c", {"c"}, "migrate", ""),  # c → d is compatible: c's nodes keep running
    ({"b"}, "a", {"b", "d"}, "refuse", "migration c cannot run while older nodes"),  # a rolling upgrade across c
    ({"a"}, "a", {"a"}, "refuse", "schema a are connected"),
    ({"e"}, "c", set(), "join", "newer than this node's (d) and allows it"),  # a newer polyfn migrated; c known
    ({"e"}, "e", set(), "refuse", "needs schema e or newer"),  # … and its floor is beyond this code
    ({"e"}, None, set(), "refuse", "needs a newer polyfn"),
]


@pytest.mark.parametrize(("db", "floor", "live", "action", "says"), CASES)
def test_plan(db: set[str], floor: str | None, live: set[str], action: str, says: str) -> None:
    p = plan(GRAPH, db, floor, live)
    assert p.action == action, p
    assert says in p.message
    if action == "refuse":
        assert "\n" not in p.message and "docs/operations.md" in p.message
    if action == "migrate":
        assert p.floor == "c"


def test_floor_and_chain() -> None:
    assert [m.revision for m in chain(GRAPH)] == ["a", "b", "c", "d"]
    assert floor_of(chain(GRAPH)) == "c"
    assert floor_of([Migration("a", None), Migration("b", "a")]) == "a"
    assert schemas_in(["polyfn schema=0015_cluster", "psql", None, ""]) == {"0015_cluster"}


def test_the_real_chain_marks_the_migrations_that_drop_what_older_nodes_use() -> None:
    graph = read_graph(MIGRATIONS_DIR / "versions")
    order = chain(graph)
    assert len(order) == len(graph), "the migrations are not one chain"
    assert {m.revision for m in order if not m.compatible} == {"0007_unified_keys", "0009_logs_in_activations"}
    assert application_name() == f"polyfn schema={order[-1].revision}"


async def _at(url: str, revision: str) -> None:
    """Migrate a new database at `url` to `revision` only, the way an older polyfn would have left it."""
    from alembic import command
    from alembic.config import Config

    store = Store.connect(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))

    def upgrade(conn: object) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(upgrade)
    await store.close()


async def test_a_rolling_upgrade_across_an_incompatible_migration_is_refused(pg_url: str) -> None:
    url = pg_url
    await _at(url, "0008_versions")
    dsn = url.replace("postgresql+asyncpg", "postgresql")
    old = await asyncpg.connect(dsn, server_settings={"application_name": "polyfn schema=0008_versions"})
    try:
        with pytest.raises(SchemaMismatch) as e:
            await Store.open(url)
        assert "migration 0009_logs_in_activations cannot run while older nodes use the shared database" in str(e.value)
        assert "schema 0008_versions are connected" in str(e.value)
    finally:
        await old.close()
    await asyncio.sleep(0.1)  # (its backend leaves pg_stat_activity)
    store = await Store.open(url)  # every old node stopped: the migration runs
    try:
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("SELECT floor FROM schema_compat"))).scalar() == "0009_logs_in_activations"
    finally:
        await store.close()


async def test_a_node_older_than_the_database_joins_or_refuses_by_its_floor(pg_url: str) -> None:
    store = await Store.open(pg_url)
    try:
        async with store.engine.begin() as conn:  # what a newer polyfn would leave: a revision unknown here
            # (and the node's connections carry its schema, for the next node's start to see)
            assert (await conn.execute(text("SELECT current_setting('application_name')"))).scalar() == \
                application_name()
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    finally:
        await store.close()
    store = await Store.open(pg_url)  # floor 0009: this code knows it, and runs without migrating
    try:
        async with store.engine.begin() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0099_future"
            await conn.execute(text("UPDATE schema_compat SET floor = '0099_future'"))
    finally:
        await store.close()
    with pytest.raises(SchemaMismatch, match=r"migrated by a newer polyfn and needs schema 0099_future or newer"):
        await Store.open(pg_url)
