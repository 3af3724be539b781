"""The vendor faces' own objects: OpenWhisk's packages, triggers and rules, OpenFaaS's image references.

Revision ID: 0011_compat_entities
Revises: 0010_apps
Create Date: 2026-12-06

Each entity is one JSON document (`doc`) keyed by (kind, name), as OpenWhisk keeps them: new fields need no
migration. Functions stay polyfn functions; only what has no polyfn counterpart lives here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_compat_entities"
down_revision: str | None = "0010_apps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compat_entities",
        sa.Column("kind", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("compat_entities")
