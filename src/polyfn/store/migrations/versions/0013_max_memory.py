"""Activations: the peak memory of the instance's sandbox when the invocation ended (`max_memory_mb`,
Lambda's "Max Memory Used").

Revision ID: 0013_max_memory
Revises: 0012_stream
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_max_memory"
down_revision: str | None = "0012_stream"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("max_memory_mb", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("max_memory_mb")
