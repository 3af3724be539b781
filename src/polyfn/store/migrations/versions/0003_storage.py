"""Object storage: S3 access keys and storage triggers (bucket notification configs).

Revises 0001 directly so that it does not depend on other branches' migrations; if another migration
also revises 0001, the two heads are re-chained when they are merged.

Revision ID: 0003_storage
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_storage"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_keys",
        sa.Column("access_key_id", sa.String, primary_key=True),
        sa.Column("secret_access_key", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("function", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_storage_keys_function", "storage_keys", ["function"])
    op.create_table(
        "storage_triggers",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("function", sa.String, nullable=False),
        sa.Column("bucket", sa.String, nullable=False),
        sa.Column("events", sa.String, nullable=False),
        sa.Column("prefix", sa.String, nullable=False),
        sa.Column("suffix", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_storage_triggers_bucket", "storage_triggers", ["bucket"])


def downgrade() -> None:
    op.drop_index("ix_storage_triggers_bucket", "storage_triggers")
    op.drop_table("storage_triggers")
    op.drop_index("ix_storage_keys_function", "storage_keys")
    op.drop_table("storage_keys")
