"""One key store: API keys can sign SigV4 (secret kept encrypted) and own a function; storage keys move in.

Revision ID: 0007_unified_keys
Revises: 0006
Create Date: 2026-12-02

`api_keys` gains `secret_enc` (the secret, Fernet-encrypted with the node key, so SigV4 can be verified)
and `owner` (the function whose instances hold the key: loop protection and clean-up). Keys made before
this migration keep only their hash: they go on working as bearer keys and are listed as `sigv4: false`.

Every row of `storage_keys` (S3 credentials, secrets in clear) becomes an API key with the same id and
secret: scope `invoke` (storage reads and writes, see docs/security.md), `owner` = its function for
per-function keys. The migration has no node key, so it stores `plain:<secret>`; the node encrypts those
at its next start (`KeyRing.start`). `storage_keys` is dropped. Downgrade recreates an empty
`storage_keys` (the moved secrets cannot be decrypted without the node key) and keeps the API keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_unified_keys"
down_revision: str | None = "0006"  # the chain so far: 0001, 0004, 0005, 0003_storage, 0002_triggers, 0006
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
#: older nodes break once this has run: it drops `storage_keys`, which nodes of 0006 read their storage keys from (store/schema.py)
compatible = False


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as b:
        b.add_column(sa.Column("secret_enc", sa.Text, nullable=True))
        b.add_column(sa.Column("owner", sa.String, nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT access_key_id, secret_access_key, name, function, created_at "
                                "FROM storage_keys")).all()
    api_keys = sa.table("api_keys", sa.column("id"), sa.column("secret_sha256"), sa.column("secret_enc"),
                        sa.column("scope"), sa.column("function"), sa.column("owner"), sa.column("description"),
                        sa.column("created_at"))
    if rows:
        op.bulk_insert(api_keys, [{
            "id": r.access_key_id, "secret_sha256": hashlib.sha256(r.secret_access_key.encode()).hexdigest(),
            "secret_enc": "plain:" + r.secret_access_key, "scope": "invoke", "function": None,
            "owner": r.function or None,
            "description": r.name,
            "created_at": r.created_at} for r in rows])
    op.drop_index("ix_storage_keys_function", "storage_keys")
    op.drop_table("storage_keys")


def downgrade() -> None:
    op.create_table(
        "storage_keys",
        sa.Column("access_key_id", sa.String, primary_key=True),
        sa.Column("secret_access_key", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("function", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_storage_keys_function", "storage_keys", ["function"])
    with op.batch_alter_table("api_keys") as b:
        b.drop_column("owner")
        b.drop_column("secret_enc")
