"""The metadata store's WAL (SQLite, `polyfn.db`) stays bounded under steady load: activation records written
one batch at a time, each its own commit, thousands of them. The activation writer's commit checkpoints past
`WAL_AUTOCHECKPOINT_PAGES` under the store's write lock, so the next write starts the WAL over (it must not
grow by every commit's pages, as the workflow runner's and the database's did: tests/workflows/test_wal.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfn.model import Activation
from polyfn.protocol import LogLine
from polyfn.store import Store, activations


async def test_the_wal_starts_over_while_activations_keep_coming(store: Store, db_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the WAL is SQLite's")
    monkeypatch.setattr(activations, "WAL_AUTOCHECKPOINT_PAGES", 64)  # (8192 in a node: 32 MB)
    wal = Path(db_url.split(":///", 1)[1] + "-wal")
    for i in range(3000):
        await store.add_activations([Activation(id=f"{i:032x}", function="f", revision=1, trigger="http",
                                                start=float(i), end=float(i) + 0.5, duration_ms=500.0,
                                                logs=[LogLine(float(i), "stdout", "x" * 200)])])
    assert wal.stat().st_size < 1_000_000
    assert len(await store.list_activations(limit=10)) == 10
