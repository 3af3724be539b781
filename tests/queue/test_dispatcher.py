"""The dispatcher's handling of jobs that cannot run: dead-lettered with the reason instead of retried for
their whole max_event_age without using up an attempt."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from polyfn.config import Settings
from polyfn.queue.attempts import UNEXPECTED_ATTEMPTS
from polyfn.queue.builtin import Job, QueueDB
from polyfn.queue.dispatcher import AsyncQueue
from polyfn.queue.filefeed import FileFeed


class Registry:
    def get(self, name: str) -> Any:
        spec = SimpleNamespace(max_instances=1, concurrency=1, max_event_age=21600.0, retry_attempts=3)
        return SimpleNamespace(revision=SimpleNamespace(spec=spec))


class Invoker:
    def __init__(self) -> None:
        self.calls = 0

    async def call(self, *a: Any, **k: Any) -> Any:  # the dispatcher hands the invoker one Call
        self.calls += 1
        raise RuntimeError("a bug of the node's with this job")


async def _queue(tmp_path: Path, invoker: Invoker) -> AsyncQueue:
    q = AsyncQueue(Settings(data_dir=tmp_path), invoker, Registry())  # type: ignore[arg-type]
    q.db = await QueueDB.open(tmp_path / "queue.db")
    q.file = FileFeed(q.db, q, time.time)  # the queue file's feed (not started: the tests claim by hand)
    q.feeds = [q.file]

    async def lookup(function: str, number: int) -> Any:
        raise AssertionError("a junk revision must not be looked up")

    q.revision_lookup = lookup
    return q


async def _claim(q: AsyncQueue, now: float) -> Job:
    (job,) = (await q.db.claim_ready(now, 10, None, lambda f: 10)).jobs
    return job


async def test_a_job_pinned_to_a_junk_revision_is_dead_lettered_at_once(tmp_path: Path) -> None:
    invoker = Invoker()
    q = await _queue(tmp_path, invoker)
    try:
        await q.db.enqueue([Job(id="j1", function="f", body=b"{}", enqueued_at=time.time(), not_before=0,
                                headers=[("x-polyfn-revision", "junk")])])
        await q._run(await _claim(q, 1), q.file)
        (dead,) = await q.db.dead()
        assert dead.id == "j1" and dead.reason.startswith("invalid_job") and "junk" in dead.reason
        assert invoker.calls == 0
    finally:
        await q.db.close()


async def test_a_job_that_fails_with_the_nodes_own_error_uses_up_attempts_then_is_dead(tmp_path: Path) -> None:

    invoker = Invoker()
    q = await _queue(tmp_path, invoker)
    try:
        await q.db.enqueue([Job(id="j2", function="f", body=b"{}", enqueued_at=time.time(), not_before=0)])
        for attempt in range(1, UNEXPECTED_ATTEMPTS + 1):
            job = await _claim(q, time.time() + 3600)  # (past its backoff)
            assert job.attempt == attempt - 1  # the attempts started so far: this one counts when it starts
            await q._run(job, q.file)
            if attempt < UNEXPECTED_ATTEMPTS:
                again = await q.db.get("j2")
                assert again is not None and again.state == "pending" and again.not_before > time.time()
                assert again.last_error["code"] == "internal_error"
        (dead,) = await q.db.dead()
        assert dead.reason.startswith("internal_error: RuntimeError") and invoker.calls == UNEXPECTED_ATTEMPTS
    finally:
        await q.db.close()


def test_a_function_result_nested_too_deeply_is_kept_as_text() -> None:
    """A function's result is parsed for the callback and for the error record: 1,000 levels of nesting were a
    RecursionError there, which put the whole completion batch back, again and again."""
    from polyfn.invoker import Outcome
    from polyfn.queue.attempts import outcome_error
    from polyfn.queue.callbacks import Callbacks

    deep = b"[" * 1000 + b"]" * 1000
    job = Job(id="j3", function="f", body=b"{}", enqueued_at=0, not_before=0, attempt=1)
    body, _ = Callbacks.payload(job, Outcome(200, [], deep), "success")
    assert json.loads(body)["result"] == deep.decode()
    code, err = outcome_error(Outcome(500, [], deep))
    assert code is None and err["message"].startswith("[[[")


async def test_jobs_waiting_for_a_slot_run_in_the_task_that_freed_it(tmp_path: Path) -> None:
    """Capacity 1, three jobs held: the first runs in a task of its own, the two that wait for its slot run one
    after the other in that same task (no task per job); each succeeds once and goes to the completion batch.
    After a failed attempt (settled with a reschedule, which waits) the next job gets a task of its own."""
    import asyncio

    from polyfn.invoker import Outcome

    class Ok:
        def __init__(self, fail: set[str]) -> None:
            self.ran: list[tuple[str, int]] = []
            self.fail = fail

        async def call(self, call: Any) -> Any:
            self.ran.append((call.activation_id, id(asyncio.current_task())))
            await asyncio.sleep(0)
            return Outcome(503 if call.activation_id in self.fail else 200, [], b"{}", call.activation_id)

    for fail, tasks in ((set(), 1), ({"a"}, 2)):
        invoker = Ok(fail)
        q = await _queue(tmp_path / str(tasks), invoker)  # type: ignore[arg-type]
        q._loop = asyncio.get_running_loop()
        try:
            await q.db.enqueue([Job(id=i, function="f", body=b"{}", enqueued_at=time.time(), not_before=0)
                                for i in "abc"])
            for job in (await q.db.claim_ready(time.time(), 10, None, lambda f: 10)).jobs:
                q.hold(job.function, len(job.body))
                q.dispatch(job, q.file)
            while q._tasks:
                await asyncio.gather(*q._tasks)
            assert [aid for aid, _ in invoker.ran] == ["a", "b", "c"]
            assert len({task for _, task in invoker.ran}) == tasks
            assert sorted(job.id for job, _, _ in q._done) == sorted({"a", "b", "c"} - fail)
        finally:
            await q.db.close()


class _Stream:
    """The cluster stream's feed as the completion batch sees it: what it was told settled."""

    def __init__(self) -> None:
        self.settled_ids: list[str] = []

    async def settled(self, jobs: list[Job]) -> None:
        self.settled_ids.extend(j.id for j in jobs)

    def room_freed(self) -> None:
        pass


class _Recorder:
    async def flush(self, background: bool = False) -> None:
        pass


async def test_a_completion_batch_of_the_streams_jobs_writes_nothing_to_the_file(tmp_path: Path) -> None:
    """A job from the cluster's stream has no row in the queue file: completing it is its ack (the feed's
    `settled`), not a DELETE of nothing in a commit of the file's own."""
    q = await _queue(tmp_path, Invoker())
    stream = _Stream()
    settled = stream.settled_ids
    q.feeds = [q.file, stream]  # type: ignore[list-item]
    q.invoker.recorder = _Recorder()  # type: ignore[attr-defined]
    try:
        out = SimpleNamespace(status=200)
        q._done = [(Job(id="s1", function="f"), stream, out), (Job(id="s2", function="f"), stream, out)]  # type: ignore[list-item]
        q.ledger.nheld = 2
        commits = q.db.commits
        await q._complete()
        assert settled == ["s1", "s2"] and q.db.commits == commits and q.ledger.nheld == 0
    finally:
        await q.db.close()


async def test_a_completion_batch_goes_as_soon_as_enough_jobs_wait(tmp_path: Path, monkeypatch: Any) -> None:
    """Finished jobs leave in batches at most every COMPLETE_EVERY seconds, but a full batch does not wait."""
    import asyncio

    from polyfn.queue import dispatcher

    monkeypatch.setattr(dispatcher, "COMPLETE_EVERY", 30.0)
    q = await _queue(tmp_path, Invoker())
    stream = _Stream()
    settled = stream.settled_ids
    q.feeds = [q.file, stream]  # type: ignore[list-item]
    q.invoker.recorder = _Recorder()  # type: ignore[attr-defined]
    q._loop = asyncio.get_running_loop()
    q._complete_at = 2
    q.ledger.nheld = 3
    task = asyncio.create_task(q._complete_loop())
    try:
        out: Any = SimpleNamespace(status=200)
        await q._succeeded(Job(id="j1", function="f"), stream, out)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert settled == ["j1"]  # the first batch at once
        await q._succeeded(Job(id="j2", function="f"), stream, out)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert settled == ["j1"]  # one job: it waits for the interval
        await q._succeeded(Job(id="j3", function="f"), stream, out)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert settled == ["j1", "j2", "j3"]  # two: a full batch, gone without waiting 30 s
    finally:
        task.cancel()
        await q.db.close()


async def test_held_payloads_stay_within_the_bytes_budget_and_every_job_runs(tmp_path: Path) -> None:
    """60 queued jobs of 1 kB for a function of capacity 1: by count the node would hold 65 (its prefetch), by
    `async_max_held_bytes` 10 kB it holds at most 11 at any moment (finished ones in the completion batch
    included: under the budget, plus the one that passes it), and every job runs once and leaves the queue."""
    import asyncio

    from polyfn.invoker import Outcome

    class Ok:
        recorder = SimpleNamespace(flush=lambda background=False: asyncio.sleep(0))

        def __init__(self) -> None:
            self.ran: list[str] = []

        async def call(self, call: Any) -> Any:
            self.ran.append(call.activation_id)
            await asyncio.sleep(0.001)
            return Outcome(200, [], b"{}", call.activation_id)

    invoker = Ok()
    q = AsyncQueue(Settings(data_dir=tmp_path, async_max_held_bytes=10_000), invoker, Registry())  # type: ignore[arg-type]
    peak = 0
    hold = q.ledger.hold

    def counted(function: str, size: int = 0) -> None:
        nonlocal peak
        hold(function, size)
        peak = max(peak, q.ledger.nbytes)

    q.ledger.hold = counted  # type: ignore[method-assign]
    db = await QueueDB.open(tmp_path / "queue.db")
    await db.enqueue([Job(id=f"j{i:02}", function="f", body=b"x" * 1000, enqueued_at=time.time(), not_before=0)
                      for i in range(60)])
    await db.close()
    await q.start()  # the claim loop takes what waits in the file
    try:
        for _ in range(500):
            if len(invoker.ran) == 60 and q.ledger.nheld == 0:
                break
            await asyncio.sleep(0.02)
        assert sorted(invoker.ran) == [f"j{i:02}" for i in range(60)]
        assert 0 < peak <= 11_000 and q.ledger.nbytes == 0
        assert await q.db.counts() == {}
    finally:
        await q.stop(1.0)
