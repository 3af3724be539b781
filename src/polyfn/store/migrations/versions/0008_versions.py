"""Published versions and aliases: `versions`, `aliases`, and `functions.last_version`.

Revision ID: 0008_versions
Revises: 0007_unified_keys
Create Date: 2026-12-03

A version freezes one revision under a number (1, 2, …, never reused: `functions.last_version` remembers the
highest one handed out); an alias names a version (or the current revision, `$LATEST`) and may send a share
of invocations to a second version (`weights`, JSON). Both go when their function is deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_versions"
down_revision: str | None = "0007_unified_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("functions") as batch:
        batch.add_column(sa.Column("last_version", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "versions",
        sa.Column("function", sa.String, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "aliases",
        sa.Column("function", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("weights", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("aliases")
    op.drop_table("versions")
    with op.batch_alter_table("functions") as batch:
        batch.drop_column("last_version")
