"""Activations: how a cold start's instance was made (`init_info`, e.g. "zygote: function").

Revision ID: 0006
Revises: 0002_triggers (the head when this was written; the lead re-chains at merge)
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0002_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("init_info", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("init_info")
