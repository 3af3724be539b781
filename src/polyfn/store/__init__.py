"""Metadata + activation store (SQLite by default, PostgreSQL for clusters). See `db.Store`."""

from polyfn.store.db import Store

__all__ = ["Store"]
