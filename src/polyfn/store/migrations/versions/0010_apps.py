"""The application platform: apps, their end users and sign-in sessions; static sites.

Revision ID: 0010_apps
Revises: 0009_logs_in_activations
Create Date: 2026-12-08

An app's settings are one JSON document (`config`), so new settings need no migration. Users are keyed by
(app, uid) with a unique email and a unique openid per app; a session holds the SHA-256 of its refresh
token's secret and when it was revoked (revoked sessions' access tokens are refused until they expire).
A site is its current files as one zip, so every node of a cluster can serve it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_apps"
down_revision: str | None = "0009_logs_in_activations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "app_users",
        sa.Column("app", sa.String, primary_key=True),
        sa.Column("uid", sa.String, primary_key=True),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("email", sa.String, nullable=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("openid", sa.String, nullable=True),
        sa.Column("unionid", sa.String, nullable=True),
        sa.Column("claims", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_sign_in_at", sa.Float, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
    )
    op.create_index("ix_app_users_email", "app_users", ["app", "email"], unique=True)
    op.create_index("ix_app_users_openid", "app_users", ["app", "openid"], unique=True)
    op.create_table(
        "app_sessions",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("app", sa.String, nullable=False),
        sa.Column("uid", sa.String, nullable=False),
        sa.Column("refresh_sha256", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_app_sessions_user", "app_sessions", ["app", "uid"])
    op.create_index("ix_app_sessions_revoked_at", "app_sessions", ["revoked_at"])
    op.create_table(
        "sites",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("digest", sa.String, nullable=False),
        sa.Column("archive", sa.LargeBinary, nullable=False),
        sa.Column("spa", sa.Boolean, nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sites")
    op.drop_table("app_sessions")
    op.drop_index("ix_app_users_openid", "app_users")
    op.drop_index("ix_app_users_email", "app_users")
    op.drop_table("app_users")
    op.drop_table("apps")
