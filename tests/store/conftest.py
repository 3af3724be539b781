"""Fixtures running every store test on a SQLite file and on PostgreSQL.

PostgreSQL: a fresh database `polyfn_test_<random>` per test session on the server named by
POLYFN_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/postgres), dropped at the end; its
`public` schema is reset before each test. If the server (or asyncpg) is unavailable the PostgreSQL
variants are skipped, except under CI=true where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from polyfn.store import Store

PG_ADMIN_DSN = os.environ.get("POLYFN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _run(make_coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to completion on its own loop in a thread, away from pytest-asyncio's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make_coro()).result()


async def _pg_execute(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _dsn_for(database: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The name of a fresh PostgreSQL database for this session."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        _unavailable("asyncpg is not installed (pip install -e '.[cluster]')")
    name = f"polyfn_test_{secrets.token_hex(4)}"
    try:
        _run(lambda: _pg_execute(PG_ADMIN_DSN, f'CREATE DATABASE "{name}"'))
    except Exception as e:  # connection refused, auth, timeout ...
        _unavailable(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable: {type(e).__name__}: {e}")
    yield name
    _run(lambda: _pg_execute(PG_ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database's async URL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'polyfn.db'}"
    name = request.getfixturevalue("pg_database")
    dsn = _dsn_for(name)
    _run(lambda: _pg_execute(dsn, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url)
    yield s
    await s.close()
