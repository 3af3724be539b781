"""The embedded store's disk space: a size bound (the oldest activations go, their logs with them), freed
pages returned to the file system (incremental vacuum), and an older file converted to it once at open.
Before, retention deleted rows but `polyfn.db` never shrank (3.4 GB, 99 % empty)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from polyfn.model import Activation, LogLine
from polyfn.store import Store, space

MB = 1024 * 1024


def big(i: int, kb: int = 100) -> Activation:
    return Activation(id=f"a{i:05d}", function="loud", revision=1, trigger="http", start=float(i),
                      logs=[LogLine(float(i), "stdout", "x" * (kb * 1024))])


async def test_size_bound_removes_the_oldest_and_the_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "polyfn.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        for chunk in range(4):
            await store.add_activations([big(chunk * 100 + i) for i in range(100)])  # 400 × 100 KB
        used = await store.used_bytes()
        assert used is not None and used > 38 * MB
        deleted = await store.prune_to_size(16 * MB, first=20)
        used = await store.used_bytes()
        assert 0 < deleted < 400 and used is not None and used <= 16 * MB
        kept = await store.list_activations(function="loud", limit=1000)
        assert len(kept) == 400 - deleted and min(a.start for a in kept) == 400 - len(kept)  # the oldest went
        writer = store._sqlite_writer()
        seen: list[int] = []
        step = space.reclaim_step

        def watched(conn: sqlite3.Connection) -> int:
            seen.append(conn.execute("PRAGMA cache_size").fetchone()[0])
            return step(conn)

        space.reclaim_step = watched  # type: ignore[assignment]
        try:
            assert await store.reclaim() > 0
        finally:
            space.reclaim_step = step  # type: ignore[assignment]
        # the vacuum moved pages through a small cache (a full-size one kept them: +13 MB of RSS in a soak);
        # the writer has its own back for the inserts that follow
        assert seen and set(seen) == {-space.RECLAIM_CACHE_KIB}, seen
        assert await writer.call(lambda c: c.execute("PRAGMA cache_size").fetchone()[0]) == -space.WRITER_CACHE_KIB
        assert path.stat().st_size <= 17 * MB  # the file itself shrank (was 0 + 40 MB of WAL)
        assert await store.prune_to_size(16 * MB) == 0  # under the bound: nothing to do
    finally:
        await store.close()
    assert path.stat().st_size <= 17 * MB


async def test_an_older_file_is_made_incrementally_vacuumable_at_open(tmp_path: Path) -> None:
    path = tmp_path / "polyfn.db"
    with sqlite3.connect(path) as db:  # as older versions made it: auto_vacuum NONE, with tables
        db.execute("CREATE TABLE leftover (x TEXT)")
        db.execute("INSERT INTO leftover VALUES ('kept')")
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert db.execute("SELECT x FROM leftover").fetchall() == [("kept",)]


async def test_only_the_embedded_store_is_measured(store: Store) -> None:
    """PostgreSQL reclaims space with its own vacuum and is not bounded by size (docs/operations.md)."""
    if store.engine.dialect.name == "sqlite":
        assert (await store.used_bytes() or 0) > 0
    else:
        assert await store.used_bytes() is None
        assert await store.prune_to_size(1) == 0 and await store.reclaim() == 0
