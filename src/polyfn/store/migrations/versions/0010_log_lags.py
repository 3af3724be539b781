"""The newest lines of a function are found through the activations' own (function, start) index.

Revision ID: 0010_log_lags
Revises: 0009_logs_in_activations
Create Date: 2026-11-27

0009's partial index on (function, logs_end) cost ~0.9 µs per logged activation in the writer, the largest
single part of what storing a log line cost. Instead, `(function, start)` also carries `logs_end` (so rows
without lines are skipped from the index alone), and `log_lags` records per function the largest
`logs_end - start` ever stored: scanning newest `start` first, once an activation's `start + lag` is older
than the lines in hand, no older activation can hold a newer line.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_log_lags"
down_revision: str | None = "0009_logs_in_activations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_lags",
        sa.Column("function", sa.String, primary_key=True),
        sa.Column("lag", sa.Float, nullable=False),
    )
    op.execute(
        'INSERT INTO log_lags (function, lag) SELECT function, max(logs_end - start) FROM activations'
        " WHERE logs != '' GROUP BY function"
    )
    op.drop_index("ix_activations_function_logs_end", table_name="activations")
    op.drop_index("ix_activations_function_start", table_name="activations")
    op.create_index("ix_activations_function_start", "activations", ["function", "start", "logs_end"])


def downgrade() -> None:
    op.drop_index("ix_activations_function_start", table_name="activations")
    op.create_index("ix_activations_function_start", "activations", ["function", "start"])
    op.create_index("ix_activations_function_logs_end", "activations", ["function", "logs_end"],
                    sqlite_where=sa.text("logs != ''"), postgresql_where=sa.text("logs != ''"))
    op.drop_table("log_lags")
