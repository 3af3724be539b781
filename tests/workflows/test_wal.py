"""The node's SQLite file (`polyfn.db`: metadata, activations, workflow state) keeps a small WAL under steady
load: workflow transitions commit on the loop's thread one after the other, activation records on their writer's
thread, both under the store's write lock (as in a node). A PASSIVE checkpoint on the workflow write thread beside
a loop that kept committing never caught up, and the WAL file grew by every commit's pages (31–34 MB after these
600 executions, where the activation writer's checkpoint caught it; the workflow store alone: 181 MB after 4,000
executions of a two-state machine with the default `CHECKPOINT_EVERY`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from polyfn.model import Activation
from polyfn.store import Store
from polyfn.workflows import runners

PASS = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}}})


async def test_the_wal_starts_over_while_executions_keep_coming(db_url: str, store: Store, make_service,  # type: ignore[no-untyped-def]
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the WAL is SQLite's")
    monkeypatch.setattr(runners, "CHECKPOINT_EVERY", 16)
    service = await make_service(write_lock=store._write_lock)
    await service.create_machine("pass", PASS)
    wal = Path(db_url.split(":///", 1)[1] + "-wal")
    ex = await service.start_execution("pass", "run-first", '{"n": 1}')

    async def poll() -> None:  # a client reading an execution's history meanwhile (readers of the WAL)
        while True:
            await service.history(ex.id)
            await asyncio.sleep(0.001)

    poller = asyncio.create_task(poll())
    try:
        for i in range(600):
            ex = await service.start_execution("pass", f"run-{i}", '{"n": 1}')
            await store.add_activations([Activation(id=f"{i:032x}", function="f", start=float(i), revision=1,
                                                    trigger="http")])
            done = await service.engine.wait(ex.id, 30)
            assert done is not None and done.status == "SUCCEEDED"
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    assert wal.stat().st_size < 8_000_000  # (1.4–1.5 MB here; main's code: 16–34 MB)
