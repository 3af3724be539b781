"""Tracing: every activation records its W3C trace id and the caller's span id.

Depends on 0001 only; when other branches add 0002/0003, the lead re-chains `down_revision` at merge.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("trace_id", sa.String, nullable=False, server_default=""))
        batch.add_column(sa.Column("parent_id", sa.String, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("parent_id")
        batch.drop_column("trace_id")
