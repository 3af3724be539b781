"""Behaviour of polyfn.store.Store, on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from polyfn.model import Activation, FunctionSpec, LogLine
from polyfn.store import Store
from polyfn.store.engine import MIGRATIONS_DIR, head_revisions
from polyfn.store.tables import activations, metadata


def spec(name: str = "hello", **kw: object) -> FunctionSpec:
    return FunctionSpec(name=name, **kw)  # type: ignore[arg-type]


def act(id: str, start: float, function: str = "hello", **kw: object) -> Activation:
    fields: dict[str, object] = {"revision": 1, "trigger": "http", **kw}
    return Activation(id=id, function=function, start=start, **fields)  # type: ignore[arg-type]


async def deploy(store: Store, name: str, sha: str = "abc") -> tuple[int, bool]:
    rev, created = await store.create_revision(spec(name), sha, f"/code/{name}/{sha}", None)
    return rev.number, created


# -- functions and revisions ---------------------------------------------------------------------


async def test_revision_numbering_and_lookup(store: Store) -> None:
    s1 = spec("hello", memory=128, env={"K": "V"}, keepalive=30.0)
    rev1, created1 = await store.create_revision(s1, "sha1", "/code/hello/1", None)
    rev2, created2 = await store.create_revision(
        spec("hello", timeout=5.0), "sha2", "/code/hello/2", "/deps/x"
    )
    other, created_other = await store.create_revision(spec("other"), "sha3", "/code/other/1", None)

    assert (rev1.number, created1) == (1, True)
    assert (rev2.number, created2) == (2, False)
    assert (other.number, created_other) == (1, True)
    assert rev1.key == "hello@1"

    info = await store.get_function("hello")
    assert info is not None
    assert info.revision == 2
    assert info.code_sha256 == "sha2"
    assert info.spec == spec("hello", timeout=5.0)
    assert info.created_at == rev1.created_at  # the function's creation, not the latest deploy
    assert info.updated_at == rev2.created_at
    assert await store.get_function("nope") is None

    current = await store.get_current_revision("hello")
    assert current == rev2
    assert current.deps_dir == "/deps/x"
    assert await store.get_current_revision("nope") is None

    first = await store.get_revision("hello", 1)
    assert first == rev1
    assert first.spec.env == {"K": "V"} and first.spec.keepalive == 30.0 and first.spec.memory == 128
    assert await store.get_revision("hello", 3) is None

    assert [r.number for r in await store.list_revisions("hello")] == [1, 2]
    assert await store.list_revisions("nope") == []
    assert [f.name for f in await store.list_functions()] == ["hello", "other"]


async def test_listing_a_namespaces_functions(store: Store) -> None:
    """A namespace's functions only (SQLite seeks them in the primary key: names that sort next to `team~…` —
    `team-a~…`, `teamz~…`, `team` of default — are not team's)."""
    for name in ("team~b", "team~a", "team-a~x", "teamz~y", "team", "hello", "tea~m"):
        await deploy(store, name)
    assert [f.name for f in await store.list_functions("team")] == ["team~a", "team~b"]
    assert [f.name for f in await store.list_functions("team-a")] == ["team-a~x"]
    assert [f.name for f in await store.list_functions("default")] == ["hello", "team"]
    assert await store.list_functions("nobody") == []
    assert len(await store.list_functions()) == 7


async def test_spec_is_stored_with_all_fields(store: Store) -> None:
    """Defaults are written out so a revision does not change meaning if a default changes later."""
    await store.create_revision(spec("hello"), "sha", "/c", None)
    async with store.engine.connect() as conn:
        raw = await conn.scalar(text("SELECT spec FROM revisions WHERE function = 'hello'"))
    stored = msgspec.json.decode(raw)
    assert stored["memory"] == 256 and stored["timeout"] == 60.0 and stored["env"] == {}
    assert set(stored) == set(FunctionSpec.__struct_fields__)


async def test_delete_then_list_and_redeploy(store: Store) -> None:
    await deploy(store, "hello", "a")
    await deploy(store, "hello", "b")
    await deploy(store, "other")
    await store.add_activations([act("a1", 1.0, logs=[LogLine(1.0, "stdout", "hi")])])

    deleted = await store.delete_function("hello")
    assert deleted is not None
    assert [(r.number, r.code_dir) for r in deleted] == [(1, "/code/hello/a"), (2, "/code/hello/b")]

    assert await store.get_function("hello") is None
    assert await store.get_current_revision("hello") is None
    assert await store.list_revisions("hello") == []
    assert [f.name for f in await store.list_functions()] == ["other"]
    assert await store.delete_function("hello") is None

    # History survives the function.
    kept = await store.get_activation("a1")
    assert kept is not None and kept.logs == [LogLine(1.0, "stdout", "hi")]

    # Deploying the name again starts a new function.
    assert await deploy(store, "hello", "c") == (1, True)


async def test_concurrent_deploys_get_distinct_numbers(store: Store) -> None:
    results = await asyncio.gather(*(deploy(store, "hello", f"sha{i}") for i in range(10)))
    assert sorted(n for n, _ in results) == list(range(1, 11))
    assert sum(created for _, created in results) == 1
    info = await store.get_function("hello")
    assert info is not None and info.revision == 10


async def test_concurrent_deploys_from_two_stores(db_url: str) -> None:
    """Two processes/nodes on one database: the database, not an in-process lock, must serialise them."""
    a, b = await Store.open(db_url), await Store.open(db_url)
    try:
        results = await asyncio.gather(
            *(deploy(s, "hello", f"sha{i}") for i in range(8) for s in (a, b)),
            *(deploy(s, f"fn-{i}") for i in range(4) for s in (a, b)),
        )
        hello = results[:16]
        assert sorted(n for n, _ in hello) == list(range(1, 17))
        assert sum(created for _, created in hello) == 1
        others = results[16:]
        assert sorted(n for n, _ in others) == [1, 1, 1, 1, 2, 2, 2, 2]
        assert sum(created for _, created in others) == 4
        assert len(await b.list_functions()) == 5
    finally:
        await a.close()
        await b.close()


# -- migrations ----------------------------------------------------------------------------------


async def test_migrations_idempotent_and_match_tables(db_url: str) -> None:
    first = await Store.open(db_url)
    await deploy(first, "hello")
    await first.close()

    second = await Store.open(db_url)  # upgrade head again on an up-to-date database: a no-op
    try:
        info = await second.get_function("hello")
        assert info is not None and info.revision == 1

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        assert head_revisions() == {head}  # what a start compares with, without importing alembic

        def inspect(conn: object) -> tuple[str | None, list[object]]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})  # type: ignore[arg-type]
            return ctx.get_current_revision(), compare_metadata(ctx, metadata)

        async with second.engine.connect() as conn:
            current, diff = await conn.run_sync(inspect)
        assert current is not None and current == head
        assert diff == [], "tables.py and the migrations disagree; add a migration"
    finally:
        await second.close()


async def test_migration_0009_moves_log_lines_into_their_activations(db_url: str) -> None:
    """A database at 0008 with lines in `log_lines`: after the upgrade they are in their activations' rows."""
    from pathlib import Path

    from alembic import command
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))

    def to_0008(conn: object) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008_versions")

    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(to_0008)
        cols = ", ".join(f'"{c}"' for c in ("id", "function", "revision", "trigger", "start", "end", "duration_ms",
                                             "wait_ms", "init_ms", "run_ms", "cold", "status", "status_code",
                                             "result", "instance"))
        for aid, start in (("a", 10.0), ("b", 11.0), ("c", 12.0)):
            await conn.execute(text(f"INSERT INTO activations ({cols}) VALUES "
                                    f"('{aid}', 'hello', 1, 'http', {start}, {start + 1}, 1, 0, 0, 1, false, "
                                    "'success', 200, '', '')"))
        for aid, ts, line in (("a", 10.1, "a-one"), ("b", 11.1, "b-one"), ("a", 10.2, 'a-"two"'), ("b", 11.0, "b-0")):
            await conn.execute(text("INSERT INTO log_lines (activation_id, function, ts, stream, line) "
                                    "VALUES (:a, 'hello', :ts, 'stdout', :line)"), {"a": aid, "ts": ts, "line": line})
    await engine.dispose()

    store = await Store.open(db_url)
    try:
        a = await store.get_activation("a")
        b = await store.get_activation("b")
        c = await store.get_activation("c")
        assert a is not None and [(ln.ts, ln.line) for ln in a.logs] == [(10.1, "a-one"), (10.2, 'a-"two"')]
        assert b is not None and [ln.line for ln in b.logs] == ["b-one", "b-0"]  # recorded order kept
        assert c is not None and c.logs == []
        assert [e["line"] for e in await store.get_logs("hello", limit=3)] == ['a-"two"', "b-0", "b-one"]
    finally:
        await store.close()


async def test_concurrent_open_migrates_once(db_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(db_url) for _ in range(4)))
    try:
        await deploy(stores[0], "hello")
        assert (await stores[3].get_function("hello")) is not None
    finally:
        for s in stores:
            await s.close()


async def test_sqlite_in_memory_is_rejected() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        await Store.open("sqlite+aiosqlite://")


async def test_sqlite_uses_wal(tmp_path: object) -> None:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/x/polyfn.db")
    try:
        async with s.engine.connect() as conn:
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(text("PRAGMA synchronous"))) == 1  # NORMAL
            assert (await conn.scalar(text("PRAGMA busy_timeout"))) > 0
    finally:
        await s.close()


# -- activations ---------------------------------------------------------------------------------


async def test_activation_roundtrip_with_logs(store: Store) -> None:
    a = act(
        "act-1",
        1000.5,
        revision=3,
        end=1000.75,
        duration_ms=250.0,
        wait_ms=10.0,
        init_ms=8.0,
        run_ms=240.0,
        cold=True,
        status="error",
        status_code=500,
        result="",
        error={"errorType": "ValueError", "errorMessage": "bad", "stackTrace": ["a", "b"]},
        logs=[LogLine(1000.6, "stdout", "second by ts"), LogLine(1000.55, "stderr", "first by ts"),
              LogLine(1000.123456789, "stdout", 'tab\t "quote" \\ é 漢字 🚀 \x00 nul, [1, {"a": 2}]'),
              LogLine(1000.7, "stdout", "")],
        instance="hello@3#1",
    )
    await store.add_activations([a, act("act-2", 1001.0)])
    got = await store.get_activation("act-1")
    # every field, and logs in the order they were recorded; a NUL (refused by PostgreSQL, a cut in SQLite)
    # is stored as U+FFFD
    a.logs[2] = LogLine(a.logs[2].ts, "stdout", a.logs[2].line.replace("\x00", "\ufffd"))
    assert got == a
    await store.add_activations([act("act-nul", 1002.0, result="a\x00b")])
    assert (await store.get_activation("act-nul")).result == "a\ufffdb"
    plain = await store.get_activation("act-2")
    assert plain is not None and plain.error is None and plain.logs == [] and plain.cold is False
    assert await store.get_activation("missing") is None
    await store.add_activations([])  # no-op


async def test_activation_same_id_replaces(store: Store) -> None:
    """A retried async invocation keeps its activation id: the newest attempt's record wins, every
    attempt's log lines are kept."""
    await store.add_activations([act("dup", 1.0, status="error", logs=[LogLine(1.0, "stdout", "try 1")])])
    await store.add_activations([act("new", 2.0), act("dup", 3.0, logs=[LogLine(3.0, "stdout", "try 2")]),
                                 act("dup", 4.0, status="success")])
    got = await store.get_activation("dup")
    assert got is not None and got.start == 4.0 and got.status == "success"
    assert [ln.line for ln in got.logs] == ["try 1", "try 2"]
    assert await store.get_activation("new") is not None


async def test_activation_filters(store: Store) -> None:
    acts = []
    for i in range(600):
        acts.append(
            act(
                f"a{i:04d}",
                1000.0 + i,
                function=("hello", "other", "third")[i % 3],
                cold=i % 5 == 0,
                status="error" if i % 7 == 0 else "success",
                logs=[LogLine(1000.0 + i, "stdout", f"line {i}")],
            )
        )
    for batch in range(0, 600, 200):
        await store.add_activations(acts[batch : batch + 200])

    newest = await store.list_activations(limit=5)
    assert [a.id for a in newest] == ["a0599", "a0598", "a0597", "a0596", "a0595"]
    assert all(a.logs == [] for a in newest)
    assert len(await store.list_activations()) == 50  # default limit
    assert len(await store.list_activations(limit=1000)) == 600

    hello = await store.list_activations(function="hello", limit=1000)
    assert len(hello) == 200 and {a.function for a in hello} == {"hello"}
    assert [a.start for a in hello] == sorted((a.start for a in hello), reverse=True)

    cold_errors = await store.list_activations(status="error", cold=True, limit=1000)
    assert {a.id for a in cold_errors} == {f"a{i:04d}" for i in range(600) if i % 35 == 0}
    warm = await store.list_activations(cold=False, limit=1000)
    assert len(warm) == 480 and not any(a.cold for a in warm)

    window = await store.list_activations(since=1010.0, until=1020.0, limit=1000)
    assert [a.start for a in window] == [1000.0 + i for i in range(19, 9, -1)]  # since <= start < until
    combo = await store.list_activations(function="other", since=1590.0)
    assert [a.id for a in combo] == ["a0598", "a0595", "a0592"]
    assert await store.list_activations(function="nope") == []
    assert await store.list_activations(limit=0) == []


async def test_logs_ordering_limit_and_filters(store: Store) -> None:
    # Two activations whose lines interleave in time, plus lines with equal timestamps.
    await store.add_activations(
        [
            act("a", 10.0, logs=[LogLine(10.0, "stdout", "a0"), LogLine(12.0, "stdout", "a2")]),
            act(
                "b",
                11.0,
                logs=[
                    LogLine(11.0, "stderr", "b1"),
                    LogLine(13.0, "stdout", "b3-first"),
                    LogLine(13.0, "stdout", "b3-second"),
                ],
            ),
            act("c", 10.5, function="other", logs=[LogLine(10.5, "stdout", "other")]),
        ]
    )
    logs = await store.get_logs("hello")
    assert [entry["line"] for entry in logs] == ["a0", "b1", "a2", "b3-first", "b3-second"]
    assert logs[1] == {"activation": "b", "ts": 11.0, "stream": "stderr", "line": "b1"}

    # Truncation keeps the newest lines, still oldest first.
    assert [e["line"] for e in await store.get_logs("hello", limit=2)] == ["b3-first", "b3-second"]
    assert [e["line"] for e in await store.get_logs("hello", limit=3)] == ["a2", "b3-first", "b3-second"]
    assert [e["line"] for e in await store.get_logs("hello", since=12.0)] == ["a2", "b3-first", "b3-second"]
    assert [e["line"] for e in await store.get_logs("hello", activation="a")] == ["a0", "a2"]
    assert [e["line"] for e in await store.get_logs("hello", activation="b", limit=1)] == ["b3-second"]
    assert await store.get_logs("hello", activation="c") == []  # c belongs to another function
    assert [e["line"] for e in await store.get_logs("other")] == ["other"]
    assert await store.get_logs("nope") == []


# -- pruning -------------------------------------------------------------------------------------


async def _fill(store: Store, n: int) -> None:
    await store.add_activations(
        [act(f"a{i:03d}", 100.0 + i, logs=[LogLine(100.0 + i, "stdout", f"l{i}")]) for i in range(n)]
    )


async def _log_count(store: Store) -> int:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(activations.c.logs).where(activations.c.logs != ""))).all()
    return sum(len(msgspec.json.decode(r.logs)) for r in rows)


async def test_prune_by_count(store: Store) -> None:
    await _fill(store, 30)
    assert await store.prune(max_count=10, max_age_s=1e9, now=200.0) == 20
    left = await store.list_activations(limit=100)
    assert [a.id for a in left] == [f"a{i:03d}" for i in range(29, 19, -1)]  # the newest 10 stay
    assert await _log_count(store) == 10
    assert await store.get_activation("a019") is None
    assert await store.prune(max_count=10, max_age_s=1e9, now=200.0) == 0


async def test_prune_in_chunks_deletes_the_same_rows(store: Store) -> None:
    """Pruning in several small transactions ends where one big one did."""
    await _fill(store, 30)
    assert await store.prune(max_count=7, max_age_s=1e9, now=200.0, chunk=4) == 23
    assert [a.id for a in await store.list_activations(limit=100)] == [f"a{i:03d}" for i in range(29, 22, -1)]
    assert await store.prune(max_count=3, max_age_s=1e9, now=200.0, chunk=4) == 4  # exactly one full chunk
    assert await store.prune(max_count=3, max_age_s=1e9, now=200.0, chunk=4) == 0
    await store.add_activations([act(f"t{i}", 5.0) for i in range(6)])  # equal starts, older than the rest
    assert await store.prune(max_count=4, max_age_s=1e9, now=200.0, chunk=2) == 5
    assert [a.id for a in await store.list_activations()] == ["a029", "a028", "a027", "t5"]


async def test_prune_by_count_with_equal_start_times(store: Store) -> None:
    await store.add_activations([act(f"t{i}", 5.0) for i in range(6)])
    assert await store.prune(max_count=4, max_age_s=1e9, now=10.0) == 2
    assert len(await store.list_activations()) == 4


async def test_prune_by_age(store: Store) -> None:
    await _fill(store, 30)  # starts 100..129
    assert await store.prune(max_count=1000, max_age_s=10.0, now=130.0) == 20  # keep start >= 120
    left = await store.list_activations(limit=100)
    assert min(a.start for a in left) == 120.0 and len(left) == 10
    assert [e["line"] for e in await store.get_logs("hello", limit=1000)] == [f"l{i}" for i in range(20, 30)]


async def test_prune_by_count_and_age(store: Store) -> None:
    await _fill(store, 30)
    # Age keeps 20 (start >= 110), count keeps 5: the stricter bound wins.
    assert await store.prune(max_count=5, max_age_s=20.0, now=130.0) == 25
    assert [a.id for a in await store.list_activations()] == [f"a{i:03d}" for i in range(29, 24, -1)]
    assert await _log_count(store) == 5
    assert await store.prune(max_count=0, max_age_s=1e9, now=130.0) == 5
    assert await store.list_activations() == []
    assert await _log_count(store) == 0


def test_sqlite_fast_insert_covers_every_activation_column() -> None:
    """The SQLite fast path lists the columns itself: a column added to `activations` must be added there."""
    from polyfn.store.activations import _ACTIVATION_COLUMNS, _activation_row, _activation_tuple
    from polyfn.store.tables import activations

    assert list(_ACTIVATION_COLUMNS) == [c.name for c in activations.c]
    act = Activation(id="a" * 32, function="f", revision=2, trigger="http", start=1.0, end=2.0, duration_ms=3.0,
                     cold=True, status="error", error={"x": 1}, result="r", instance="i", trace_id="t",
                     parent_id="p")
    logs = [LogLine(1.5, "stdout", "hi\x00"), LogLine(1.75, "stderr", "there")]
    row = _activation_row(act, logs)
    assert dict(zip(_ACTIVATION_COLUMNS, _activation_tuple(act, logs), strict=True)) == {**row, "cold": 1}
    assert row["logs_end"] == 1.75
    assert msgspec.json.decode(row["logs"]) == [[1.5, "stdout", "hi\ufffd"], [1.75, "stderr", "there"]]


async def test_alike_records_are_stored_as_every_other_record(store: Store) -> None:
    """Records alike but for their per-call columns go in with the shared columns bound once (SQLite's
    `_sqlite_statements`): every column reads back as it was given, beside records of the other paths (few
    alike, an error, log lines, a NUL); a record written so replaces an older one of its id, keeping its lines."""
    await store.add_activations([act("again", 0.5, status="error", logs=[LogLine(0.5, "stdout", "try 1")])])

    def alike(i: int, **kw: object) -> Activation:
        fields: dict[str, object] = {"end": 10.0 + i, "duration_ms": 1.5 * i, "wait_ms": 0.25 * i, "run_ms": 0.5 * i,
                                     "result": f"r{i % 3}", "instance": "hello@1#a", "trace_id": f"t{i}",
                                     "max_memory_mb": 12.5 + i, "memory_mb": 256, "req_bytes": i, "resp_bytes": 2 * i,
                                     "status_code": 201, **kw}
        return act(f"al{i:02d}", float(i), **fields)  # type: ignore[arg-type]

    records = [alike(i) for i in range(20)]
    records += [alike(i, instance="hello@1#b", cold=True, init_ms=7.5, init_info="zygote") for i in range(20, 23)]
    records += [alike(23, function="other", parent_id="p", trigger="invoke"),
                alike(24, status="error", error={"errorType": "E"}), alike(25, logs=[LogLine(1.0, "stdout", "x")]),
                alike(26, result="a\x00b")]
    again = act("again", 30.0, end=31.0, instance="hello@1#a", memory_mb=256, status_code=201, result="r0",
                max_memory_mb=12.5)
    records += [again]
    await store.add_activations(records)
    for a in records:
        got = await store.get_activation(a.id)
        want = a if a.id != "again" else msgspec.structs.replace(a, logs=[LogLine(0.5, "stdout", "try 1")])
        if "\x00" in a.result:
            want = msgspec.structs.replace(a, result=a.result.replace("\x00", "\ufffd"))
        assert got == want, a.id
    assert [e["line"] for e in await store.get_logs("hello")] == ["try 1", "x"]


def test_alike_records_bind_their_shared_columns_once() -> None:
    """The SQLite statements of a batch of alike records bind the per-call columns of each and the rest once."""
    from polyfn.store.activations import (
        _ACTIVATION_COLUMNS,
        _ROW_COLUMNS,
        _SHARED_COLUMNS,
        _sqlite_statements,
    )

    records = [(act(f"a{i}", float(i), instance="i1"), []) for i in range(32)]
    records += [(act(f"b{i}", float(i), instance="i2"), []) for i in range(3)]  # too few alike: every column
    stmts = _sqlite_statements(records)
    assert sum(len(params) for _, params in stmts) == (32 * len(_ROW_COLUMNS) + len(_SHARED_COLUMNS)
                                                        + 3 * len(_ACTIVATION_COLUMNS))


async def test_retried_activation_keeps_the_log_lines_of_every_attempt(store: Store) -> None:
    """The same id recorded twice (a retried async invocation), in one batch and across batches: the newest
    record wins, and the lines of every attempt stay, in order."""
    await store.add_activations([act("r", 1.0, status="error", logs=[LogLine(1.0, "stdout", "try 1")]),
                                 act("r", 2.0, status="error", logs=[LogLine(2.0, "stdout", "try 2")])])
    await store.add_activations([act("r", 3.0, status="success", logs=[LogLine(3.0, "stdout", "try 3")]),
                                 act("q", 3.5)])
    await store.add_activations([act("r", 3.0, status="success")])  # a record without lines keeps them
    got = await store.get_activation("r")
    assert got is not None and got.status == "success" and got.start == 3.0
    assert [ln.line for ln in got.logs] == ["try 1", "try 2", "try 3"]
    assert [e["line"] for e in await store.get_logs("hello")] == ["try 1", "try 2", "try 3"]
    assert [e["line"] for e in await store.get_logs("hello", limit=1)] == ["try 3"]


async def test_recorder_drops_a_record_the_database_refuses_and_keeps_the_others(store: Store) -> None:
    """A poison record (here a result the driver cannot bind) must not block every later record."""
    from polyfn.observe.recorder import ActivationRecorder

    rec = ActivationRecorder(store)
    rec.record(act("good-1", 1.0))
    rec.record(act("poison", 2.0, result=object()))
    rec.record(act("good-2", 3.0))
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type differs per database
        await store.add_activations([act("poison", 2.0, result=object())])
    await rec.flush()
    assert (await store.get_activation("good-1")) is not None and (await store.get_activation("good-2")) is not None
    assert await store.get_activation("poison") is None
    rec.record(act("good-3", 4.0))
    await rec.flush()
    assert await store.get_activation("good-3") is not None
