"""Metering beyond invocations (observe/usage.py): storage byte-seconds, database reads and writes, workflow
transitions, summed in the `usage` rows (per namespace, function, hour) like GB·s; and the namespace an app
belongs to (`apps.namespace`: tenancy.py).

Revision ID: 0017_ns4
Revises: 0016_ns
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_ns4"
down_revision: str | None = "0016_ns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("storage_byte_s", "db_reads", "db_writes", "transitions")


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        for c in COLUMNS:
            batch.add_column(sa.Column(c, sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("namespace", sa.String, nullable=False, server_default="default"))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("namespace")
    with op.batch_alter_table("usage") as batch:
        for c in COLUMNS:
            batch.drop_column(c)
