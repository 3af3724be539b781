"""Every database-core test runs on the embedded SQLite file and on PostgreSQL (the store's fixtures: a fresh
PostgreSQL database per session, its schema reset per test; skipped without PostgreSQL, failed under CI=true)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polyfn.db.core import Database

_spec = importlib.util.spec_from_file_location("_store_fixtures", Path(__file__).parents[1] / "store" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_store)
pg_database = _store.pg_database
db_url = _store.db_url


def tables_url(db_url: str) -> str:
    """The database's URL for the core: a PostgreSQL URL, or the SQLite file beside the store's."""
    if db_url.startswith("sqlite"):
        return str(Path(db_url.split(":///", 1)[1]).with_name("tables.db"))
    return db_url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    d = await Database.open(tables_url(db_url))
    yield d
    await d.close()
