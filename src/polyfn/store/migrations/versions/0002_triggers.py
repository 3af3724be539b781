"""Event triggers table.

Revision ID: 0002_triggers
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_triggers"
down_revision: str | None = "0003_storage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "triggers",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("function", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_triggers_function", "triggers", ["function"])


def downgrade() -> None:
    op.drop_table("triggers")
