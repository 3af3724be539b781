"""`quota_use`: what each node of a cluster runs per namespace, for the instances, memory and rate quotas
across nodes (polyfn/quota_share.py, docs/tenancy.md "In a cluster").

Revision ID: 0018_ns6
Revises: 0017_ns4
Create Date: 2026-12-07

One row per (node, namespace) with live instances or calls lately (the rate quota is shared out among the nodes
serving a namespace), rewritten by its node about every second. Nodes of the schema before keep working: they
neither write nor read it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_ns6"
down_revision: str | None = "0017_ns4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_use",
        sa.Column("node", sa.String, primary_key=True),
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("instances", sa.Integer, nullable=False, server_default="0"),
        sa.Column("memory_mb", sa.Integer, nullable=False, server_default="0"),
        sa.Column("idle", sa.Integer, nullable=False, server_default="0"),
        sa.Column("active", sa.Integer, nullable=False, server_default="0"),
        sa.Column("wants", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quota_use")
