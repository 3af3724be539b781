"""`schema_compat`: the oldest code schema that may run against this database (store/schema.py).

Revision ID: 0015_cluster
Revises: 0014_usage
Create Date: 2026-12-06

One row, `floor`: the newest migration the database has been through that nodes of the schema before it
cannot live with (`compatible = False` in its file), else the first. A node whose code is older than the
database (a rolling upgrade under way, a node restarted on its old version) runs when its code knows the
floor, and refuses to start otherwise. The node that migrates writes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_cluster"
down_revision: str | None = "0014_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schema_compat",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("floor", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schema_compat")
