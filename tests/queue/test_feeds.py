"""The two feeds of the async queue (queue/feed.py) against a recording holder: what each decides on its own —
the queue file's direct insert and its claim marks, the stream's handling of early, duplicate and held jobs.
The file feed runs on a real queue file; the stream feed's JetStream is tests/queue/test_jetstream.py's and the
e2e modules' (here its messages are recorded, to see which of ack and nak each decision sends)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from polyfn.queue.builtin import Job, QueueDB
from polyfn.queue.capacity import Ledger
from polyfn.queue.filefeed import COUNT_AFTER, FileFeed
from polyfn.queue.streamfeed import StreamFeed


class Holder:
    """The dispatcher's side of a feed (`feed.Holder`), recording what it is asked to run."""

    def __init__(self, cap: int = 2, max_held: int = 100, now: float = 1000.0, max_bytes: int = 1 << 30) -> None:
        self.cap = cap
        self.ledger: Ledger[Any] = Ledger(max_held, self.capacity, max_bytes)
        self.clock = lambda: now
        self.stopping = False
        self.dispatched: list[str] = []

    def capacity(self, function: str) -> int:
        return self.cap

    def hold(self, function: str, size: int = 0) -> None:
        self.ledger.hold(function, size)

    def release(self, function: str, size: int = 0) -> None:
        self.ledger.release(function, size)

    def dispatch(self, job: Job, feed: Any, reserved: bool = False) -> None:
        self.dispatched.append(job.id)


def job(i: str, function: str = "f", not_before: float = 0.0) -> Job:
    return Job(id=i, function=function, body=b"{}", enqueued_at=0.0, not_before=not_before)


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    d = await QueueDB.open(tmp_path / "queue.db")
    yield d
    await d.close()


async def _claimed(feed: FileFeed, holder: Holder, n: int) -> None:
    """Run the claim loop until a claim ran and `n` jobs were dispatched."""
    feed.start()
    try:
        await asyncio.sleep(0.05)  # (a claim runs at once if one is due)
        for _ in range(500):
            if not feed._behind_all and len(holder.dispatched) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"dispatched {holder.dispatched}, wanted {n}")
    finally:
        holder.stopping = True
        await feed.stop()
        holder.stopping = False


async def test_file_feed_claims_what_waits_then_inserts_new_jobs_already_claimed(db: QueueDB) -> None:
    holder = Holder()
    feed = FileFeed(db, holder, holder.clock)
    await feed.accept(job("j1"))  # before the first claim, anything may wait in the file: queued, not started
    assert holder.dispatched == [] and (await db.get("j1")).state == "pending"
    await _claimed(feed, holder, 1)
    assert holder.dispatched == ["j1"] and holder.ledger.held == {"f": 1}
    assert (await db.get("j1")).state == "running"

    j2 = job("j2")
    await feed.accept(j2)  # nothing waits ahead of it and there is room: claimed at insert, started
    got = await db.get("j2")
    # a slot was free too: it starts right after the commit, its first attempt counted in the insert
    assert holder.dispatched == ["j1", "j2"] and (got.state, got.attempt) == ("running", 1)
    assert holder.ledger.held == {"f": 2} and holder.ledger.invoking == {"f": 1}
    feed.started(j2)  # (its start: counted in memory; in the file already, nothing more written)
    assert j2.attempt == 1 and not feed._counted and not feed._running
    holder.ledger.invoking["f"] = 2  # every slot busy: held at its insert, waiting in memory, nothing counted
    await feed.accept(job("j3"))
    got = await db.get("j3")
    assert holder.dispatched == ["j1", "j2", "j3"] and (got.state, got.attempt) == ("running", 0)


async def test_file_feed_queues_a_job_behind_others_of_its_function_or_when_there_is_no_room(db: QueueDB) -> None:
    holder = Holder(cap=1, max_held=2)
    feed = FileFeed(db, holder, holder.clock)
    await _claimed(feed, holder, 0)  # an empty claim: nothing behind
    holder.hold("f")
    holder.hold("g")  # the node holds as many as it may
    await feed.accept(job("j1"))
    assert holder.dispatched == [] and (await db.get("j1")).state == "pending"
    holder.release("g")
    await feed.accept(job("j2"))  # room again, but j1 of the same function waits ahead: in order
    assert holder.dispatched == [] and (await db.get("j2")).state == "pending"
    await feed.accept(job("h1", "h"))  # another function, nothing ahead of it: direct
    assert holder.dispatched == ["h1"]


async def test_file_feed_reschedules_gives_back_and_cancels_in_the_file(db: QueueDB) -> None:
    holder = Holder()
    feed = FileFeed(db, holder, holder.clock)
    await db.enqueue([job("j1"), job("j2"), job("j3")])
    await _claimed(feed, holder, 3)
    j1, j2, j3 = await db.get("j1"), await db.get("j2"), await db.get("j3")
    for started in (j1, j3):  # their invocations start (the feed counts the attempt; writes it if still running)
        feed.started(started)
    feed.ran(j1, 0.001)  # j1 ends at once: its settling writes the count
    await asyncio.sleep(COUNT_AFTER * 3)  # j3 still runs: counted in the file
    await feed.reschedule(j1, 2000.0, {"code": "function_error"}, uncount=True)
    again = await db.get("j1")
    assert (again.state, again.not_before, again.attempt) == ("pending", 2000.0, 0)  # a throttle: no attempt used
    assert feed._next_due == 2000.0 and "f" in feed._behind  # claimed again when due
    await feed.give_back([j2])  # the node stops before it started
    assert ((await db.get("j2")).state, (await db.get("j2")).attempt) == ("pending", 0)  # never counted
    assert ((await db.get("j3")).state, (await db.get("j3")).attempt) == ("running", 1)  # counted at its start
    assert (await feed.cancel("j2", 1000.0)).reason == "cancelled"
    assert await feed.cancel("j3", 1000.0) is None  # running: not the feed's to cancel
    assert await feed.deleted("f") == []  # the file's jobs are dead-lettered when they come up


async def test_file_feed_an_attempt_settled_without_ran_is_not_counted_again_later(db: QueueDB) -> None:
    """An invocation that raised (the node's own error: `ran` is not told) is rescheduled with its whole count
    written; the count of its start due COUNT_AFTER later must not add one more on top."""
    holder = Holder()
    feed = FileFeed(db, holder, holder.clock)
    await db.enqueue([job("j1")])
    await _claimed(feed, holder, 1)
    j1 = await db.get("j1")
    feed.started(j1)
    await feed.reschedule(j1, 2000.0, {"code": "internal_error"}, uncount=False)
    await asyncio.sleep(COUNT_AFTER * 3)
    await db.write([])  # (a group commit after the count's moment: anything written soon is in by now)
    assert ((await db.get("j1")).state, (await db.get("j1")).attempt) == ("pending", 1)


async def test_file_feed_claim_loop_is_woken_by_finished_jobs_only_when_a_claim_could_take_something(
        db: QueueDB) -> None:
    holder = Holder(cap=1, max_held=1000)
    feed = FileFeed(db, holder, holder.clock)
    await _claimed(feed, holder, 0)
    feed._wake.clear()
    feed.room_freed()  # nothing waits in the file: no claim to make (on the cluster's stream, the usual case)
    assert not feed._wake.is_set()
    for _ in range(holder.ledger.limit("f")[1]):
        holder.hold("f")
    await feed.accept(job("j1"))  # no room: queued behind
    feed._wake.clear()
    # behind a backlog, not at every finished job: once the function has room for a batch (half its prefetch)
    for _ in range(holder.ledger.refill("f") - 1):
        holder.release("f")
        feed.room_freed()
        assert not feed._wake.is_set()
    holder.release("f")
    feed.room_freed()
    assert feed._wake.is_set()


async def test_file_feed_holds_payloads_within_the_bytes_budget(db: QueueDB) -> None:
    """Once the payloads held pass the node's bytes budget, an accepted job waits in the file (not inserted already
    claimed), whatever its function; the claim loop takes it once the bytes held are under half the budget."""
    holder = Holder(cap=1, max_bytes=1000)
    feed = FileFeed(db, holder, holder.clock)
    await _claimed(feed, holder, 0)
    await feed.accept(Job(id="big", function="f", body=b"x" * 5000, enqueued_at=0.0, not_before=0.0))
    assert holder.dispatched == ["big"] and holder.ledger.nbytes == 5000  # under the budget before it: taken
    await feed.accept(Job(id="j2", function="f", body=b"x" * 10, enqueued_at=0.0, not_before=0.0))
    await feed.accept(Job(id="g1", function="g", body=b"x" * 10, enqueued_at=0.0, not_before=0.0))
    assert holder.dispatched == ["big"] and {(await db.get(i)).state for i in ("j2", "g1")} == {"pending"}
    holder.release("f", 5000)
    await _claimed(feed, holder, 3)
    assert sorted(holder.dispatched) == ["big", "g1", "j2"] and holder.ledger.nbytes == 20


class Msg:
    def __init__(self) -> None:
        self.sent: list[tuple[str, float | None]] = []

    async def ack(self) -> None:
        self.sent.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.sent.append(("nak", delay))


class Stream:
    """Stands in for `JetStreamJobs` where the feed's own decisions are tested."""

    ack_wait = 30.0

    def __init__(self, waiting: list[tuple[Job, Msg]] | None = None) -> None:
        self.published: list[Job] = []
        self.waiting = waiting or []

    async def publish(self, job: Job, first: bool = False) -> None:
        self.published.append(job)

    async def ack_many(self, msgs: list[Msg]) -> None:
        for m in msgs:
            await m.ack()

    async def get(self, job_id: str) -> Job | None:
        return None

    async def take_all(self, function: str) -> list[tuple[Job, Msg]]:
        out, self.waiting = self.waiting, []
        return out

    def arrived(self) -> list[Msg]:
        return []


async def test_stream_feed_hands_back_early_and_duplicate_jobs_and_holds_the_others() -> None:
    holder = Holder(now=1000.0)
    feed = StreamFeed(Stream(), holder, None)  # type: ignore[arg-type]
    early, dup, first = Msg(), Msg(), Msg()
    await feed._take(job("j1", not_before=1010.0), early, 1000.0)  # a retry due in 10 s
    assert early.sent == [("nak", 10.0)] and holder.dispatched == []
    await feed._take(job("j2"), first, 1000.0)
    assert holder.dispatched == ["j2"] and holder.ledger.held == {"f": 1} and first.sent == []
    assert (await feed.get("j2")).attempt == 0  # held here: found without asking the stream (not started yet)
    await feed._take(job("j2"), dup, 1000.0)  # redelivered while held here: back after the ack wait
    assert dup.sent == [("nak", 30.0)] and holder.dispatched == ["j2"]

    await feed.settled([await feed.get("j2")])  # completed: acknowledged once, and no longer held
    await feed.settled([job("j2")])
    assert first.sent == [("ack", None)] and await feed.get("j2") is None


async def test_stream_feed_retries_by_publishing_first_and_forgets_what_it_lost() -> None:
    stream = Stream()
    holder = Holder()
    feed = StreamFeed(stream, holder, None)  # type: ignore[arg-type]
    m1, m2, m3 = Msg(), Msg(), Msg()
    for i, m in (("j1", m1), ("j2", m2), ("j3", m3)):
        await feed._take(job(i), m, 1000.0)
    held = await feed.get("j1")
    feed.started(held)  # (its invocation started: counted)
    await feed.reschedule(held, 1005.0, {"code": "function_error"}, uncount=False)
    (again,) = stream.published
    assert (again.id, again.state, again.not_before, again.attempt) == ("j1", "pending", 1005.0, 1)
    assert m1.sent == [("ack", None)]  # the new attempt is stored before the old one goes
    feed.lost(await feed.get("j2"))  # not settled (NATS away): no ack, no heartbeat; JetStream redelivers
    assert m2.sent == [] and feed._held_messages() == [m3]
    await feed.give_back([await feed.get("j3")])  # the node stops: another node takes it now
    assert m3.sent == [("nak", None)] and feed._held_messages() == []
    assert await feed.cancel("j3", 1000.0) is None


async def test_stream_feed_takes_a_deleted_functions_waiting_jobs_except_those_it_runs() -> None:
    running, waiting = Msg(), Msg()
    stream = Stream()
    holder = Holder()
    feed = StreamFeed(stream, holder, None)  # type: ignore[arg-type]
    await feed._take(job("j1"), running, 1000.0)
    stream.waiting = [(job("j1"), Msg()), (job("j2"), waiting)]  # j1 redelivered: its run settles it
    assert [j.id for j in await feed.deleted("f")] == ["j2"]
    await feed.settled([job("j2")])  # dead-lettered by the dispatcher: acknowledged
    assert waiting.sent == [("ack", None)]


def test_stream_feed_sums_how_long_jobs_take() -> None:
    feed = StreamFeed(Stream(), Holder(), None)  # type: ignore[arg-type]
    feed.ran(job("a"), 1.0)
    feed.ran(job("b"), 9.0)
    assert feed._took["f"] == pytest.approx(2.0)  # a moving average: 1 + (9 - 1) / 8
