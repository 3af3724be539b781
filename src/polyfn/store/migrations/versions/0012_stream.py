"""Activations: a streamed response's figures (`stream`: bytes, chunks, time to first byte, how it ended; JSON).

Revision ID: 0012_stream
Revises: 0011_compat_entities
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_stream"
down_revision: str | None = "0011_compat_entities"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("stream", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("stream")
