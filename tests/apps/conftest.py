"""The identity core's tests run on SQLite and on PostgreSQL, like the store's (fixtures shared with them)."""

from __future__ import annotations

from ..store.conftest import db_url, pg_database, store

__all__ = ["db_url", "pg_database", "store"]
