"""Usage metering: what each activation bills (memory, request and response bytes) and the `usage` table,
summed per namespace, function and hour (observe/usage.py).

Revision ID: 0014_usage
Revises: 0013_max_memory
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_usage"
down_revision: str | None = "0013_max_memory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("memory_mb", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("req_bytes", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("resp_bytes", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "usage",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("function", sa.String, primary_key=True),
        sa.Column("hour", sa.Integer, primary_key=True),
        sa.Column("invocations", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("billed_ms", sa.BigInteger, nullable=False),
        sa.Column("mb_ms", sa.BigInteger, nullable=False),
        sa.Column("req_bytes", sa.BigInteger, nullable=False),
        sa.Column("resp_bytes", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_hour", "usage", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_usage_hour", "usage")
    op.drop_table("usage")
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("resp_bytes")
        batch.drop_column("req_bytes")
        batch.drop_column("memory_mb")
