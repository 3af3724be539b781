"""A node joins a cluster only with the cluster's node key; otherwise it refuses to start, in one line.

Every node of a cluster must hold the same `node.key`: it encrypts the secrets and the API keys' stored secrets in
the shared database and derives the keys that sign app users' tokens and temporary credentials. A node started
with another key (a data dir made afresh, a Secret not mounted, a key rotated on one node) would serve, but fail
every secret, every SigV4 key and every token the others made, one request at a time. The shared database
already holds the proof: the API keys' secrets each node encrypted at its first start. So before it starts, a node
decrypts them with its key; if any does not decrypt, it stops with what to do.

Only a shared (non-SQLite) database is checked: a lone node's key and database live in the same data dir.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: secret_enc of a storage key that migration 0007 moved and the key ring has not encrypted yet (auth/keys.py)
_PLAIN = "plain:"


class NodeKeyMismatch(Exception):
    """This node's node key is not the one the shared database was written with."""


def undecryptable(box: Any, tokens: Iterable[str]) -> int:
    """How many of `tokens` (Fernet ciphertexts) `box` (a SecretBox) cannot decrypt."""
    from cryptography.fernet import InvalidToken

    bad = 0
    for token in tokens:
        try:
            box.decrypt(token)
        except (InvalidToken, ValueError):
            bad += 1
    return bad


def verdict(key_path: Path, box: Any, tokens: list[str]) -> str | None:
    """What is wrong with this node's key against the shared database's `tokens`, or None when it matches."""
    if not tokens:
        return None  # the first node of a new cluster: its key becomes the cluster's
    if not key_path.exists():
        return (f"{key_path} is missing, and the shared database holds secrets encrypted with the cluster's node key: "
                "copy node.key from a running node of this cluster (or restore it from a backup) before starting")
    bad = undecryptable(box, tokens)
    if bad:
        return (f"{key_path} is not this cluster's node key: {bad} of the {len(tokens)} key secrets stored in the "
                "shared database do not decrypt with it; every node must hold the same node.key — copy it from a "
                "running node (or restore it from a backup)")
    return None


async def check(database_url: str, key_path: Path) -> None:
    """Raise NodeKeyMismatch when `key_path` cannot decrypt what the shared database at `database_url` holds."""
    from sqlalchemy import select

    from polyfn.auth.secrets import SecretBox
    from polyfn.store import Store
    from polyfn.store.tables import api_keys

    if not database_url or database_url.startswith("sqlite"):
        return
    store = await Store.open(database_url)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys.c.secret_enc))).scalars().all()
    finally:
        await store.close()
    problem = verdict(key_path, SecretBox(key_path), [t for t in rows if t and not t.startswith(_PLAIN)])
    if problem:
        raise NodeKeyMismatch(problem)
