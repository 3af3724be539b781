"""Initial schema: functions, revisions, activations, log_lines.

Written out by hand rather than imported from `tables.py`: a migration is a frozen record of what the schema
was at that point, so later edits to `tables.py` must come with a new migration, never change this one.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("current_revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "revisions",
        sa.Column("function", sa.String, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("code_sha256", sa.String, nullable=False),
        sa.Column("code_dir", sa.Text, nullable=False),
        sa.Column("deps_dir", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "activations",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("function", sa.String, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String, nullable=False),
        sa.Column("start", sa.Float, nullable=False),
        sa.Column("end", sa.Float, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("wait_ms", sa.Float, nullable=False),
        sa.Column("init_ms", sa.Float, nullable=False),
        sa.Column("run_ms", sa.Float, nullable=False),
        sa.Column("cold", sa.Boolean, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("instance", sa.String, nullable=False),
    )
    op.create_index("ix_activations_function_start", "activations", ["function", "start"])
    op.create_index("ix_activations_start", "activations", ["start"])
    op.create_table(
        "log_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("activation_id", sa.String, nullable=False),
        sa.Column("function", sa.String, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("stream", sa.String, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )
    op.create_index("ix_log_lines_function_ts", "log_lines", ["function", "ts"])
    op.create_index("ix_log_lines_activation_id", "log_lines", ["activation_id"])


def downgrade() -> None:
    op.drop_table("log_lines")
    op.drop_table("activations")
    op.drop_table("revisions")
    op.drop_table("functions")
