"""The SQLite queue file: group-committed enqueue, claim, retry scheduling, dead letters, recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from polyfn.queue.builtin import Job, QueueDB


async def claim(db: QueueDB, now: float, limit: int = 100, room: int = 100) -> list[str]:
    """Ids of the due jobs claimed, every function, `room` each."""
    return [j.id for j in (await db.claim_ready(now, limit, None, lambda f: room)).jobs]


async def test_enqueue_claim_finish_and_recover(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db")
    jobs = [Job(id=f"j{i}", function="f", body=b"{}", enqueued_at=i, not_before=i) for i in range(5)]
    await asyncio.gather(*(db.enqueue([j]) for j in jobs))  # concurrent callers share commits
    got = await db.claim_ready(2.5, 10, None, lambda f: 100)
    assert [j.id for j in got.jobs] == ["j0", "j1", "j2"] and got.next_due == 3
    assert all(j.state == "running" and j.attempt == 0 for j in got.jobs)  # held: counted when they start
    db.started(["j2"])  # j2's invocation starts (not waited for: the reschedule's commit carries it or follows it)
    assert await claim(db, 2.5) == []
    await db.finish_many(["j0"], [("j0", "http://cb.example/", b"{}", None)], now=3)
    assert (await db.get_callback("j0"))["state"] == "pending"  # type: ignore[index]
    await db.reschedule("j1", 50.0, {"code": "x"}, 1)
    await db.close()

    db = await QueueDB.open(tmp_path / "q.db")  # a restart: j2 was running → pending again
    assert await db.recover() == 1
    again = {j.id: j for j in (await db.claim_ready(10, 10, None, lambda f: 100)).jobs}
    assert set(again) == {"j2", "j3", "j4"}
    assert again["j2"].attempt == 1  # the attempt it started, not the claims
    assert again["j3"].attempt == 0  # claimed, never started: a crash spends nothing
    assert await db.get("j0") is None
    j1 = await db.get("j1")
    assert j1 is not None and j1.state == "pending" and j1.last_error == {"code": "x"}
    assert (await db.claim_ready(10, 10, None, lambda f: 100)).next_due == 50.0
    await db.close()


async def test_dead_letters_replay_and_purge(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db")
    job = Job(id="d1", function="f", body=b"\xff\x00", enqueued_at=1, not_before=1)
    await db.enqueue([job])
    await db.bury(job, "retries exhausted", {"code": "function_error"}, now=5)
    dead = await db.dead()
    assert [d.id for d in dead] == ["d1"] and dead[0].reason == "retries exhausted"
    assert dead[0].summary()["body_base64"] is True
    assert await claim(db, 100) == []  # dead letters never run by themselves
    assert await db.replay("d1", now=100)
    assert not await db.replay("d1", now=100)  # not dead any more
    (j,) = (await db.claim_ready(100, 10, None, lambda f: 100)).jobs
    assert j.attempt == 0 and j.enqueued_at == 100
    await db.bury(j, "again", None, now=101)
    assert await db.purge("d1")
    assert await db.get("d1") is None
    await db.close()


async def test_one_bad_write_does_not_sink_the_batch(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db")
    await db.enqueue([Job(id="dup", function="f", body=b"")])
    results = await asyncio.gather(db.enqueue([Job(id="dup", function="f", body=b"")]),
                                   db.enqueue([Job(id="ok", function="f", body=b"")]), return_exceptions=True)
    assert isinstance(results[0], Exception) and results[1] is None
    assert await db.get("ok") is not None
    await db.close()


async def test_unclaim(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db")
    await db.enqueue([Job(id=f"b{i}", function="b", body=b"", not_before=i) for i in range(3)])
    assert await claim(db, 10) == ["b0", "b1", "b2"]
    await db.unclaim(["b1"])
    (j,) = (await db.claim_ready(10, 10, ["b"], lambda f: 100)).jobs
    assert j.id == "b1" and j.attempt == 0  # claims count no attempt
    await db.close()


async def test_claim_ready_per_function_room(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db")
    jobs = [Job(id=f"{f}{i}", function=f, body=b"", not_before=i) for i in range(4) for f in "abc"]
    jobs.append(Job(id="later", function="c", body=b"", not_before=50))
    await db.enqueue(jobs)
    rooms = {"a": 2, "b": 0, "c": 10}
    got = await db.claim_ready(now=10, limit=100, functions=None, room=rooms.__getitem__)  # every function
    assert sorted(j.id for j in got.jobs) == ["a0", "a1", "c0", "c1", "c2", "c3"]
    assert [j.id for j in got.jobs if j.function == "a"] == ["a0", "a1"]  # oldest first
    assert all(j.state == "running" and j.attempt == 0 for j in got.jobs)
    assert got.behind == {"a", "b"}  # a: claimed up to its room; b: had none; c: every due job taken
    assert got.next_due == 50.0
    got = await db.claim_ready(now=10, limit=1, functions=["b", "a"], room=lambda f: 10)  # the node's limit
    assert [j.id for j in got.jobs] == ["b0"] and got.behind == {"a", "b"}
    got = await db.claim_ready(now=10, limit=100, functions=["a"], room=lambda f: 10)
    assert [j.id for j in got.jobs] == ["a2", "a3"] and got.behind == set()
    await db.close()


async def test_queue_sync_full(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db", sync="full")
    assert (await db.read("PRAGMA synchronous"))[0][0] == 2  # FULL
    await db.enqueue([Job(id="x", function="f", body=b"")])
    assert db.commits == 1 and db.writes == 1
    await db.close()
    with pytest.raises(ValueError, match="normal or full"):
        await QueueDB.open(tmp_path / "q2.db", sync="off")


async def test_concurrent_writes_are_merged_into_few_statements(tmp_path: Path) -> None:
    """Adjacent callers' one-row INSERTs become multi-row INSERTs and their DELETEs one `IN (…)` (groupcommit.py),
    in powers of two up to 256 rows; what each caller wrote is all there, in order."""
    db = await QueueDB.open(tmp_path / "q.db")
    jobs = [Job(id=f"m{i:04}", function=f"f{i % 3}", body=b"%d" % i, headers=[("h", str(i))], enqueued_at=i,
                not_before=i) for i in range(600)]
    commits = db.commits
    await asyncio.gather(*(db.enqueue([j]) for j in jobs))
    assert db.commits - commits < 600 // 10  # grouped
    assert (await db.counts()) == {"pending": 600}
    got = await db.get("m0599")
    assert got is not None and got.headers == [("h", "599")] and got.body == b"599"
    done = [j.id for j in jobs[:300]]
    cbs = [(i, "http://cb.example/", b"{}", None) for i in done[:37]]  # (a VALUES with literals: merged too)
    await asyncio.gather(db.finish_many(done[:150], cbs, now=1), db.finish_many(done[150:], (), now=1),
                         db.enqueue([Job(id="late", function="f0", body=b"")]))
    assert (await db.counts()) == {"pending": 301}
    assert await db.get("m0000") is None and await db.get("m0300") is not None
    assert all([(await db.get_callback(i)) is not None for i in done[:37]])
    await db.close()


async def test_a_claimed_jobs_headers_are_its_pairs_as_queued(tmp_path: Path) -> None:
    db = await QueueDB.open(tmp_path / "q.db")
    hs = [("content-type", "application/json"), ("x-é", "ü \"q\""), ("a", "")]
    await db.enqueue([Job(id="j", function="f", body=b"{}", headers=hs), Job(id="e", function="f", body=b"{}")])
    # a row written otherwise (not pairs of strings) reads back as it is
    await db.write([("UPDATE jobs SET headers=? WHERE id='e'", ('[["n", 1]]',), False)])
    got = {j.id: j for j in (await db.claim_ready(1.0, 10, None, lambda f: 10)).jobs}
    assert got["j"].headers == hs and all(type(h) is tuple for h in got["j"].headers)
    assert got["e"].headers == [("n", 1)]
    await db.close()



async def test_claim_ready_takes_jobs_while_the_bytes_taken_are_under_spare(tmp_path: Path) -> None:
    """A claim takes a function's due jobs, oldest first, while the payloads taken before each are under `spare`
    (the last one may pass it); a function cut short by the bytes stays behind, as does one not reached."""
    db = await QueueDB.open(tmp_path / "queue.db")
    try:
        await db.enqueue([Job(id=f"a{i}", function="a", body=b"x" * 100, enqueued_at=0, not_before=i)
                          for i in range(5)])
        await db.enqueue([Job(id="b0", function="b", body=b"x" * 1000, enqueued_at=0, not_before=0)])
        got = await db.claim_ready(10, 100, ["a", "b"], lambda f: 10, spare=250)
        assert [j.id for j in got.jobs] == ["a0", "a1", "a2"] and got.behind == {"a", "b"}
        assert [(await db.get(i)).state for i in ("a2", "a3", "b0")] == ["running", "pending", "pending"]
        assert (await db.claim_ready(10, 100, ["a"], lambda f: 10, spare=0)).jobs == []
        big = await db.claim_ready(10, 100, ["b", "a"], lambda f: 10, spare=1)  # a payload over the budget runs
        assert [j.id for j in big.jobs] == ["b0"] and big.behind == {"a"}
        rest = await db.claim_ready(10, 100, ["a"], lambda f: 10, spare=10_000)
        assert [j.id for j in rest.jobs] == ["a3", "a4"] and rest.behind == set()
    finally:
        await db.close()


async def test_the_jobs_have_one_index_beside_their_id_and_the_next_due_time_is_found_without_another(
        tmp_path: Path) -> None:
    """Every insert, claim and delete kept a second index of the jobs, `jobs_ready (state, not_before)`, up to date
    for one query (the next retry's due time): a queue file made with it loses it when opened, and the next due
    time comes from `jobs_function`, per function."""
    import sqlite3

    old = sqlite3.connect(tmp_path / "queue.db")
    old.executescript("CREATE TABLE jobs (id TEXT PRIMARY KEY, function TEXT NOT NULL, kind TEXT NOT NULL, "
                      "trigger TEXT NOT NULL, method TEXT NOT NULL DEFAULT 'POST', path TEXT NOT NULL DEFAULT '/', "
                      "query TEXT NOT NULL DEFAULT '', headers TEXT NOT NULL DEFAULT '[]', body BLOB NOT NULL, "
                      "content_type TEXT NOT NULL DEFAULT '', callback_url TEXT, enqueued_at REAL NOT NULL, "
                      "not_before REAL NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, "
                      "last_error TEXT, dead_at REAL, reason TEXT);"
                      "CREATE INDEX jobs_ready ON jobs(state, not_before);")
    old.close()
    db = await QueueDB.open(tmp_path / "queue.db")
    try:
        rows = await db.read("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='jobs'")
        assert sorted(r["name"] for r in rows) == ["jobs_function", "sqlite_autoindex_jobs_1"]
        await db.enqueue([Job(id=f"{f}{t}", function=f, body=b"", enqueued_at=0, not_before=t)
                          for f, t in (("a", 1), ("a", 70), ("b", 60), ("c", 5))])
        got = await db.claim_ready(10, 100, ["a"], lambda f: 100)
        assert [j.id for j in got.jobs] == ["a1"] and got.next_due == 60
    finally:
        await db.close()


async def test_starts_are_counted_in_one_merged_statement_nobody_waits_for(tmp_path: Path) -> None:
    """`started` (an attempt's invocation starts) is written with the next group commit without waiting for it; a
    run of them is one `UPDATE … WHERE id IN (…)`; a close writes what is left."""
    db = await QueueDB.open(tmp_path / "q.db")
    await db.enqueue([Job(id=f"s{i}", function="f", body=b"") for i in range(5)])
    commits = db.commits
    db.started(["s0", "s1"])
    db.started(["s2", "s3"])
    await db.write([])  # a caller behind them: committed once they are
    assert db.commits - commits <= 2
    assert [(await db.get(f"s{i}")).attempt for i in range(5)] == [1, 1, 1, 1, 0]
    db.started(["s4"])
    await db.close()
    db = await QueueDB.open(tmp_path / "q.db")
    assert (await db.get("s4")).attempt == 1
    await db.close()
