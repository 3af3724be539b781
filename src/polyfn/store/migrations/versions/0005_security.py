"""Security: scoped API keys (hashed) and encrypted secrets.

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-27

(Numbered 0005 to leave room for migrations landing from other branches; the lead re-chains
`down_revision` at merge time.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("secret_sha256", sa.String, nullable=False),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("function", sa.String, nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_api_keys_secret_sha256", "api_keys", ["secret_sha256"], unique=True)
    op.create_table(
        "secrets",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_index("ix_api_keys_secret_sha256", "api_keys")
    op.drop_table("api_keys")
