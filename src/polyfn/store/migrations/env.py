"""Alembic environment for the polyfn store.

At runtime `Store.open` runs the upgrade itself and hands its (already open, already in a transaction)
connection in `config.attributes["connection"]`, so no alembic.ini and no sync driver are needed. When a
developer runs the `alembic` command instead (e.g. `alembic revision --autogenerate` with
`-x url=sqlite+aiosqlite:////tmp/x.db` or `sqlalchemy.url` set), an async engine is created from that URL.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from polyfn.store.tables import metadata

config = context.config


def run_on(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
elif context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=sqlite+aiosqlite:////path/to/polyfn.db")
    asyncio.run(run_from_url(url))
