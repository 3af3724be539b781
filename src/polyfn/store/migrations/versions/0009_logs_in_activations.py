"""Log lines live in their activation's row (`activations.logs`, a JSON array), not one row each.

Revision ID: 0009_logs_in_activations
Revises: 0008_versions
Create Date: 2026-11-27

A line per row cost three B-tree inserts when written and three deletes when pruned, per line: the
largest part of what a log line cost the hot path. Now an activation's lines are one JSON text
(`[[ts, stream, line], ...]`, '' when there are none) in its row, and `logs_end` (the newest line's
timestamp) with a partial index on (function, logs_end) serves "the newest lines of a function". The
existing lines are moved, then `log_lines` is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_logs_in_activations"
down_revision: str | None = "0008_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
#: older nodes break once this has run: it drops `log_lines`, which nodes of 0008 write their log lines to (store/schema.py)
compatible = False


def upgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("logs", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("logs_end", sa.Float, nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE activations a SET logs = l.logs, logs_end = l.logs_end FROM ("
            " SELECT activation_id, json_agg(json_build_array(ts, stream, line) ORDER BY id)::text AS logs,"
            " max(ts) AS logs_end FROM log_lines GROUP BY activation_id) l WHERE a.id = l.activation_id"
        )
    else:
        op.execute(
            "UPDATE activations SET"
            " logs = (SELECT json_group_array(json_array(ts, stream, line)) FROM"
            "  (SELECT ts, stream, line FROM log_lines WHERE activation_id = activations.id ORDER BY id)),"
            " logs_end = (SELECT max(ts) FROM log_lines WHERE activation_id = activations.id)"
            " WHERE id IN (SELECT activation_id FROM log_lines)"
        )
    op.create_index("ix_activations_function_logs_end", "activations", ["function", "logs_end"],
                    sqlite_where=sa.text("logs != ''"), postgresql_where=sa.text("logs != ''"))
    op.drop_index("ix_log_lines_function_ts", table_name="log_lines")
    op.drop_index("ix_log_lines_activation_id", table_name="log_lines")
    op.drop_table("log_lines")


def downgrade() -> None:
    op.create_table(
        "log_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("activation_id", sa.String, nullable=False),
        sa.Column("function", sa.String, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("stream", sa.String, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )
    op.create_index("ix_log_lines_function_ts", "log_lines", ["function", "ts"])
    op.create_index("ix_log_lines_activation_id", "log_lines", ["activation_id"])
    op.drop_index("ix_activations_function_logs_end", table_name="activations")
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("logs_end")
        batch.drop_column("logs")
