"""The cluster's job stream against the machine's NATS JetStream: what is published is pulled per function,
found by id, counted, redelivered when its holder goes quiet, and deduplicated on its first publish."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator

import pytest

from polyfn.queue.builtin import Job
from polyfn.queue.jetstream import JetStreamJobs, QueueUnavailable

NATS_URL = os.environ.get("POLYFN_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _reachable() -> None:
    try:
        socket.create_connection(("127.0.0.1", int(NATS_URL.rsplit(":", 1)[1])), timeout=1).close()
    except OSError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"NATS is not reachable at {NATS_URL}: {e} (CI=true: services must be available)")
        pytest.skip(f"NATS is not reachable at {NATS_URL}: {e}")


@pytest.fixture
async def jobs() -> AsyncIterator[JetStreamJobs]:
    _reachable()
    j = JetStreamJobs(NATS_URL, f"TEST_{secrets.token_hex(4).upper()}", ack_wait=1.0)
    await j.open()
    yield j
    await j._js.delete_stream(j.stream)
    await j._js.delete_stream(j.topics_stream)
    await j.close()


def job(function: str, n: int = 0) -> Job:
    return Job(id=f"{function}-{n}-{secrets.token_hex(3)}", function=function, body=b'{"n": %d}' % n,
               enqueued_at=1.0, not_before=1.0)


async def test_jobs_are_pulled_per_function_and_found_by_id(jobs: JetStreamJobs) -> None:
    a = [job("fa", i) for i in range(3)]
    b = job("fb")
    for j in [*a, b]:
        await jobs.publish(j, first=True)
    assert (await jobs.get(b.id)) == b
    assert await jobs.get("nope") is None
    assert dict(await jobs.by_function()) == {"fa": 3, "fb": 1}
    assert await jobs.counts() == (4, 0)

    got = await jobs.fetch("fa", 10, timeout=1)
    assert [j for j, _ in got] == a  # only fa's, oldest first
    assert await jobs.counts() == (1, 3)  # three held, one waiting
    for _, msg in got:
        await msg.ack_sync()
    assert dict(await jobs.by_function()) == {"fb": 1}
    assert await jobs.fetch("fa", 10, timeout=0.2) == []


async def test_a_first_publish_is_deduplicated_by_job_id(jobs: JetStreamJobs) -> None:
    j = job("fd")
    await jobs.publish(j, first=True)
    await jobs.publish(j, first=True)  # a retried submit of the same accepted job
    assert dict(await jobs.by_function()) == {"fd": 1}
    again = Job(**{**{f: getattr(j, f) for f in j.__struct_fields__}, "attempt": 1, "not_before": 2.0})
    await jobs.publish(again)  # a retry is a new message
    assert dict(await jobs.by_function()) == {"fd": 2}
    assert (await jobs.get(j.id)).attempt == 1  # the newest message is the job's state


async def test_a_job_id_the_node_made_is_published_without_headers(jobs: JetStreamJobs) -> None:
    """Nothing can send a node-made id twice: no JetStream message id, and no header for a delivery to parse."""
    mine, given = job("fh"), job("fh", 1)
    await jobs.publish(mine, first=True, dedupe=False)
    await jobs.publish(given, first=True)  # a caller's id (a Lambda request id, an alarm tick's): deduplicated
    assert (await jobs._js.get_last_msg(jobs.stream, jobs.subject("fh", mine.id))).headers is None
    raw = await jobs._js.get_last_msg(jobs.stream, jobs.subject("fh", given.id))
    assert raw.headers == {"Nats-Msg-Id": given.id}
    got = await jobs.fetch("fh", 10, timeout=1)
    assert [j for j, _ in got] == [mine, given]


async def test_a_publish_stored_by_another_stream_than_the_queues_fails(jobs: JetStreamJobs) -> None:
    from nats.js.api import StreamConfig

    from polyfn.queue.jswire import PublishFailed

    other = f"OTHER_{secrets.token_hex(4).upper()}"
    await jobs._js.add_stream(StreamConfig(name=other, subjects=[f"{other}.>"]))
    try:
        assert jobs._pub is not None
        with pytest.raises(PublishFailed, match="another stream"):
            await jobs._pub.publish(f"{other}.f.1", b"x", jobs.stream)
        await jobs._pub.publish(f"{jobs.stream}.f.1", b"x", jobs.stream)  # (its own: stored)
    finally:
        await jobs._js.delete_stream(other)


async def test_a_job_whose_holder_goes_quiet_is_delivered_again(jobs: JetStreamJobs) -> None:
    j = job("fq")
    await jobs.publish(j, first=True)
    [(first, _)] = await jobs.fetch("fq", 1, timeout=1)
    assert await jobs.fetch("fq", 1, timeout=0.3) == []  # held (ack wait 1 s)
    [(second, msg)] = await jobs.fetch("fq", 1, timeout=3)  # no ack, no heartbeat: back after the ack wait
    assert second == first == j
    assert msg.metadata.num_delivered == 2
    await msg.ack_sync()


async def test_heartbeats_keep_a_job_held(jobs: JetStreamJobs) -> None:
    await jobs.publish(job("fh"), first=True)
    [(_, msg)] = await jobs.fetch("fh", 1, timeout=1)
    for _ in range(4):  # 2 s held, beating every 0.5 s
        await asyncio.sleep(0.5)
        await msg.in_progress()
    assert await jobs.fetch("fh", 1, timeout=0.1) == []
    await msg.ack_sync()


async def test_publishing_without_nats_is_a_clear_error() -> None:
    _reachable()
    j = JetStreamJobs(NATS_URL, f"TEST_{secrets.token_hex(4).upper()}", ack_wait=1.0)
    await j.open()  # connects, makes the stream
    await j._js.delete_stream(j.topics_stream)
    await j._js.delete_stream(j.stream)  # then the stream goes away
    with pytest.raises(QueueUnavailable, match="did not take the job"):
        await j.publish(job("fx"))
    await j.close()
    with pytest.raises(RuntimeError, match=r"cannot reach NATS at nats://127\.0\.0\.1:1\b"):
        await JetStreamJobs("nats://127.0.0.1:1", "X", 1.0).open()


def test_the_stream_prefetch_follows_how_long_jobs_take() -> None:
    """About 50 ms of work beyond the capacity: deep for short jobs (pulls in batches), shallow for long ones
    (other nodes can take them); min(capacity, 8) before the first job has run."""
    from polyfn.queue.capacity import PREFETCH
    from polyfn.queue.streamfeed import StreamFeed

    feed = StreamFeed(None, None, None)  # type: ignore[arg-type]
    assert feed.prefetch("f", 4) == 4 and feed.prefetch("f", 20) == 8
    feed.ran(Job(id="j", function="f"), 0.0002)  # 0.2 ms jobs
    assert feed.prefetch("f", 4) == PREFETCH
    feed._took["f"] = 0.005
    assert feed.prefetch("f", 4) == 40
    for _ in range(50):  # the moving average follows slower jobs
        feed.ran(Job(id="j", function="f"), 2.0)
    assert feed.prefetch("f", 1) == 1 and feed.prefetch("f", 100) == 8


async def test_a_waiting_job_is_taken_out_and_a_held_one_is_not(jobs: JetStreamJobs) -> None:
    """Cancelling (`take_waiting`): a job no node has taken leaves the stream and is never delivered; a held one
    stays with its holder; a retry handed back until it is due is taken out too."""
    a, b, c = (job("fc", i) for i in range(3))
    for j in (a, b, c):
        await jobs.publish(j, first=True)
    [(held, msg)] = await jobs.fetch("fc", 1, timeout=1)
    assert held == a
    assert await jobs.take_waiting(a.id, now=10.0) is None  # a node holds it: running
    assert await jobs.take_waiting(c.id, now=10.0) == c
    assert await jobs.take_waiting(c.id, now=10.0) is None  # gone
    assert await jobs.take_waiting("nope", now=10.0) is None
    assert [j for j, _ in await jobs.fetch("fc", 10, timeout=0.5)] == [b]  # c is never delivered
    await msg.ack_sync()

    import time

    now = time.time()
    retry = Job(**{**{f: getattr(b, f) for f in b.__struct_fields__}, "id": "fc-retry", "attempt": 1,
                   "not_before": now + 30})
    await jobs.publish(retry)
    [(early, m)] = await jobs.fetch("fc", 1, timeout=1)
    await m.nak(delay=30)  # what a node does with a retry pulled before it is due
    assert early == retry and await jobs.take_waiting(retry.id, now=now) == retry
    assert await jobs.get(retry.id) is None


async def test_a_job_taken_while_being_cancelled_is_cancelled_by_its_taker(jobs: JetStreamJobs) -> None:
    """A node pulls the job between the cancel's look and its delete: the nodes are asked, and the one that
    holds it cancels it (here: answers what it did); the job is out of the stream either way."""
    j = job("fr")
    await jobs.publish(j, first=True)
    delete = jobs._js.delete_msg
    taken: list[tuple[Job, object]] = []

    async def another_node_pulls_first(stream: str, seq: int) -> bool:
        taken.extend(await jobs.fetch("fr", 1, timeout=1))
        return await delete(stream, seq)

    async def the_taker(activation_id: str) -> str | None:
        return "pending" if any(t.id == activation_id for t, _ in taken) else None

    await jobs.on_cancels(the_taker)
    jobs._js.delete_msg = another_node_pulls_first
    assert await jobs.take_waiting(j.id, now=10.0) == "pending"
    assert [t for t, _ in taken] == [j] and await jobs.get(j.id) is None


async def test_a_job_deleted_as_the_consumer_moves_on_is_cancelled_here(jobs: JetStreamJobs) -> None:
    """The consumer goes past the deleted message to a later job: no node holds it (none answers), so the
    job is the cancel's to dead-letter."""
    j, later = job("fs", 1), job("fs", 2)
    await jobs.publish(j, first=True)
    delete = jobs._js.delete_msg
    pulled: list[tuple[Job, object]] = []

    async def delete_then_the_consumer_moves_on(stream: str, seq: int) -> bool:
        done = await delete(stream, seq)
        await jobs.publish(later, first=True)
        pulled.extend(await jobs.fetch("fs", 1, timeout=1))
        return done

    jobs._js.delete_msg = delete_then_the_consumer_moves_on
    assert await jobs.take_waiting(j.id, now=10.0) == j
    assert [t for t, _ in pulled] == [later]


async def test_a_short_batch_ends_at_once_and_a_waiting_fetch_takes_a_late_job(jobs: JetStreamJobs) -> None:
    """jswire.Puller: a batch JetStream cannot fill ends with its status (not the timeout); with nothing there,
    the fetch waits for the next job."""
    a = [job("fw", i) for i in range(3)]
    for j in a:
        await jobs.publish(j, first=True)
    got = await jobs.fetch("fw", 10, timeout=30)
    assert [j for j, _ in got] == a
    late = job("fw", 9)

    async def publish_later() -> None:
        await asyncio.sleep(0.2)
        await jobs.publish(late, first=True)

    task = asyncio.create_task(publish_later())
    [(j, msg)] = await jobs.fetch("fw", 10, timeout=30)
    await task
    assert j == late
    for _, m in [*got, (j, msg)]:
        await m.ack_sync()


async def test_a_publish_nobody_acknowledges_times_out() -> None:
    """A subject something listens on but no stream stores: no PubAck, the publish fails after its timeout."""
    _reachable()
    import nats

    from polyfn.queue.jswire import Publisher, PublishFailed

    nc = await nats.connect(NATS_URL)
    try:
        subject = f"polyfn-test.{secrets.token_hex(4)}"
        async def ignore(msg: object) -> None:  # a listener that never replies
            pass

        await nc.subscribe(subject, cb=ignore)
        pub = Publisher(nc, timeout=0.3)
        await pub.start()
        with pytest.raises(PublishFailed, match="no PubAck"):
            await pub.publish(subject, b"x", "ANY")
        await pub.stop()
    finally:
        await nc.close()


async def test_a_job_delivered_after_its_fetch_gave_up_is_kept_held_until_taken(jobs: JetStreamJobs) -> None:
    """A pull answered late (its fetch returned already) leaves the message with the puller: `arrived` lists it
    for the held jobs' heartbeat, and the next fetch returns it."""
    j = job("fl")
    await jobs.publish(j, first=True)
    puller = await jobs._consumer("fl", jobs.stream, jobs.subject("fl", "*"), "fn-fl")
    await puller._request({"batch": 1, "no_wait": True})  # as if a fetch had asked and given up
    for _ in range(100):
        if jobs.arrived():
            break
        await asyncio.sleep(0.02)
    [msg] = jobs.arrived()
    await msg.in_progress()  # what the heartbeat does with it
    [(got, m)] = await jobs.fetch("fl", 5, timeout=1)
    assert got == j and jobs.arrived() == []
    await m.ack_sync()


async def test_pubacks_and_pulled_jobs_skip_nats_py_subscription_queues(jobs: JetStreamJobs) -> None:
    """jswire.Direct: the PubAck and job subscriptions' messages go from the parser to their handlers (nats-py's
    own subscription never sees them: no queue, no task hop); another subscription on the same connection
    still gets its messages through nats-py, and a message with headers (a job with a message id) is whole."""
    a = job("fd", 1)
    await jobs.publish(a, first=True)  # (a message id: delivered with a header)
    b = job("fd", 2)
    await jobs.publish(b, first=True, dedupe=False)
    got = await jobs.fetch("fd", 10, timeout=5)
    assert [j for j, _ in got] == [a, b]
    for _, m in got:
        await m.ack_sync()
    nc = jobs._nc
    puller = jobs._subs["fd"]
    assert puller._sub._received == 0 and jobs._pub._sub._received == 0  # (nats-py counts what it delivers)
    assert {puller._sub._id, jobs._pub._sub._id} <= set(nc._polyfn_direct.handlers)

    heard: asyncio.Queue[bytes] = asyncio.Queue()

    async def other(msg: object) -> None:
        heard.put_nowait(msg.data)  # type: ignore[attr-defined]

    subject = f"polyfn-test.{secrets.token_hex(4)}"
    sub = await nc.subscribe(subject, cb=other)
    await nc.publish(subject, b"theirs")
    assert await asyncio.wait_for(heard.get(), 5) == b"theirs"
    await sub.unsubscribe()


async def test_a_fetch_takes_what_fits_in_max_bytes_and_says_when_nothing_did(jobs: JetStreamJobs) -> None:
    """`max_bytes`: JetStream delivers the messages that fit; when not even the first does it ends the pull with a
    409 at once, and the fetch returns nothing with `over_bytes` set (the feed then takes that one job alone)."""
    big = [Job(id=f"fm-{i}-{secrets.token_hex(3)}", function="fm", body=b"x" * 10_000, enqueued_at=1.0,
               not_before=1.0) for i in range(3)]
    for j in big:
        await jobs.publish(j, first=True)
    got = await jobs.fetch("fm", 10, timeout=1, max_bytes=25_000)
    assert [j for j, _ in got] == big[:2] and not jobs.over_bytes("fm")
    assert await jobs.fetch("fm", 10, timeout=1, max_bytes=5_000) == [] and jobs.over_bytes("fm")
    rest = await jobs.fetch("fm", 10, timeout=1)
    assert [j for j, _ in rest] == big[2:] and not jobs.over_bytes("fm")
    for _, msg in [*got, *rest]:
        await msg.ack_sync()
