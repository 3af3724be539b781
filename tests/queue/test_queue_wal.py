"""The queue file's WAL stays bounded under steady load: jobs enqueued, claimed and finished one at a time,
each its own commit, thousands of them (the WAL must start over after its checkpoints, not grow by every
commit's pages)."""

from __future__ import annotations

from pathlib import Path

from polyfn.queue.builtin import Job, QueueDB


async def test_the_queue_wal_starts_over_while_jobs_keep_coming(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db")
    try:
        for i in range(1500):
            await db.enqueue([Job(id=f"j{i}", function="f", body=b"x" * 200, enqueued_at=i, not_before=i)])
            got = await db.claim_ready(i + 1, 10, None, lambda f: 100)
            await db.finish_many([j.id for j in got.jobs], [], now=i + 1)
        assert db.commits >= 3000
        size = (tmp_path / "q.db-wal").stat().st_size
        print("queue WAL bytes", size)
        assert size < 8_000_000  # (SQLite's own checkpoint every 1,000 pages: the WAL restarts at ~4 MB)
    finally:
        await db.close()
