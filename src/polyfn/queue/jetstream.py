"""The cluster's async queue: jobs wait in a NATS JetStream work-queue stream that every node shares.

With `queue_url` set (nats://…), `AsyncQueue.enqueue` publishes each accepted job to the stream and answers
once JetStream has stored it (the PubAck). Each function has one durable consumer (`fn-<name>`, filtered on
its subjects) that every node pulls from, as many jobs as the function has room for on the node (its
capacity plus a small prefetch), so a backlog spreads over the nodes instead of waiting in one node's
memory. A job runs on whichever node has room, and a node that dies for good takes no job with it: a job is
acknowledged only after its activation record is stored (or after it was rescheduled or dead-lettered), and
a held job whose node stops sending progress heartbeats (`keep_held`) is redelivered to another node after
`ack_wait`.

One message per job attempt, on subject `<stream>.<function>.<job id>`:
- the body is the `Job` (msgpack), attempt count, `not_before` and last error included;
- a retry publishes the job again (attempt, due time, error) and then acknowledges the old message;
- a job pulled before it is due is handed back with a `nak(delay)` until then.
So a job's state is always one message, found by its id with a wildcard subject lookup (`get`).
Dead letters and result callbacks stay in the node's queue file (`QueueDB`), where the dead-letter API
lists and replays them. Embedded-topic messages and log triggers' lines (a copy per subscribing trigger) go
to a second stream, `<stream>_TOPICS`, one subject and durable consumer (`t-<trigger id>`) per trigger.
Change notices (`announce_change`), node-to-node requests and cancels ride the same connection on core NATS
(nodemessages.py). At-least-once: a node killed between a retry's publish and the old message's
acknowledgement leaves both (the job's id, its idempotency key, is the same).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from polyfn.queue.builtin import Job
from polyfn.queue.jswire import Publisher, Puller, publish_many
from polyfn.queue.nodemessages import NodeMessages

log = logging.getLogger("polyfn.queue")

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Job).decode


class TopicMessage(msgspec.Struct, array_like=True):
    """One subscriber's copy of an embedded-topic message (or of a log line for a log trigger)."""

    id: str
    body: bytes
    attributes: dict[str, str]
    sent_at: float


_decode_topic = msgspec.msgpack.Decoder(TopicMessage).decode


async def keep_held(held: Callable[[], Iterable[Any]], every: float) -> None:
    """Until cancelled, tell JetStream every `every` seconds that the messages `held()` returns are still in
    progress: a node that stops beating (killed, cut off) loses them to the other nodes after the ack wait.
    Used for held jobs (the dispatcher) and for topic batches (`TopicRunner`)."""
    while True:
        await asyncio.sleep(every)
        for msg in list(held()):
            try:
                await msg.in_progress()
            except Exception as e:  # NATS away: the next beat tries again (or the messages go elsewhere)
                log.warning("async queue: heartbeat for a held message failed: %s", e)
                break


class QueueUnavailable(Exception):
    """JetStream did not take the job (NATS unreachable, stream missing): the caller gets a 503."""


class JetStreamJobs(NodeMessages):
    """A node's handle on the shared job stream: publish, pull, look up, count (and, on the same connection,
    the node-to-node messages of nodemessages.py)."""

    def __init__(self, url: str, stream: str, ack_wait: float):
        self.url = url
        self.stream = stream
        self.ack_wait = ack_wait
        self._nc: Any = None
        self._js: Any = None
        self._subs: dict[str, Puller] = {}  # function (or "topic:<trigger id>") → its puller (jswire.py)
        self._pub: Publisher | None = None  # publishes with their PubAcks (jswire.py)
        self._closing = False
        self._notices: set[asyncio.Future[None]] = set()  # change notices being published

    def subject(self, function: str, job_id: str) -> str:
        return f"{self.stream}.{function}.{job_id}"

    async def open(self) -> None:
        """Connect (reconnecting for ever afterwards) and create the stream if it is missing."""
        try:
            import nats
            from nats.js.api import RetentionPolicy, StorageType, StreamConfig
        except ImportError:
            raise RuntimeError("queue_url needs the NATS client: pip install 'polyfn[cluster]'") from None

        async def error(e: Exception) -> None:  # one line, not nats-py's traceback per reconnect attempt
            log.warning("async queue: NATS at %s: %s: %s", self.url, type(e).__name__, e)

        async def disconnected() -> None:
            if not self._closing:
                log.warning("async queue: disconnected from NATS at %s; reconnecting", self.url)

        async def reconnected() -> None:
            log.info("async queue: reconnected to NATS at %s", self.url)

        try:
            # A few attempts at start (a node without its queue must not come up), then reconnect for ever:
            # nats-py reads `max_reconnect_attempts` for both, so it is raised once connected.
            self._nc = await nats.connect(self.url, name="polyfn-queue", connect_timeout=2, reconnect_time_wait=1,
                                          max_reconnect_attempts=2, error_cb=error, disconnected_cb=disconnected,
                                          reconnected_cb=reconnected)
        except Exception as e:
            raise RuntimeError(f"async queue: cannot reach NATS at {self.url}: {type(e).__name__}: {e}") from None
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream()
        self._pub = Publisher(self._nc, timeout=5.0)
        await self._pub.start()
        config = StreamConfig(name=self.stream, subjects=[f"{self.stream}.>"], retention=RetentionPolicy.WORK_QUEUE,
                              storage=StorageType.FILE, duplicate_window=120.0,
                              description="polyfn async invocations (one message per job attempt)")
        try:
            await self._js.stream_info(self.stream)
        except Exception:
            await self._js.add_stream(config)
        try:  # embedded topics and log triggers: one subject per subscribing trigger
            await self._js.stream_info(self.topics_stream)
        except Exception:
            await self._js.add_stream(StreamConfig(
                name=self.topics_stream, subjects=[f"{self.topics_stream}.>"], retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE, duplicate_window=120.0,
                description="polyfn embedded-topic messages, one copy per subscribing trigger"))

    async def _consumer(self, key: str, stream: str, subject: str, name: str) -> Puller:
        """This node's puller on durable consumer `name` (made by the first node that needs it, then shared
        by every node; a work-queue stream allows one consumer per subject, and these filters never overlap)."""
        puller = self._subs.get(key)
        if puller is None:
            from nats.js.api import AckPolicy, ConsumerConfig
            from nats.js.errors import NotFoundError

            try:
                await self._js.consumer_info(stream, name)
            except NotFoundError:  # (made by two nodes at once: the same config, JetStream takes both)
                await self._js.add_consumer(stream, config=ConsumerConfig(
                    name=name, durable_name=name, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait, max_deliver=-1, max_ack_pending=-1))
            made = Puller(self._nc, self._js._prefix, stream, name)
            await made.start()
            puller = self._subs.setdefault(key, made)
            if puller is not made:  # another caller made it meanwhile
                await made.stop()
        return puller

    @staticmethod
    async def _pull(puller: Puller, n: int, timeout: float, decode: Callable[[bytes], Any],
                    max_bytes: int = 0) -> list[tuple[Any, Any]]:
        """Up to `n` decoded messages with their handles (as many as fit in `max_bytes` if > 0), waiting at most
        `timeout` for the first. A message that is not polyfn's (someone else published on the subject) is
        dropped with a warning."""
        msgs = await puller.fetch(n, timeout, max_bytes)
        out = []
        for m in msgs:
            try:
                out.append((decode(m.data), m))
            except msgspec.DecodeError:
                log.warning("async queue: message %s on %s is not polyfn's; dropped", m.metadata.sequence.stream,
                            m.subject)
                await m.term()
        return out

    def arrived(self) -> list[Any]:
        """Job messages delivered to this node that no fetch returned yet (a pull answered after its fetch gave
        up): the held jobs' heartbeat covers them too, so none goes to another node while it waits here."""
        return [m for key, puller in self._subs.items() if not key.startswith("topic:") for m in puller.arrived()]

    async def close(self) -> None:
        """Acknowledgements and heartbeats already written go out (flush); held jobs not acknowledged go to
        another node after their ack wait. (Not `drain()`: it waits up to 30 s on the pull subscriptions.)"""
        self._closing = True
        if self._pub is not None:
            await self._pub.stop()
        if self._nc is not None:
            try:
                await self._nc.flush(timeout=2)
            except Exception:
                pass
            await self._nc.close()

    async def publish(self, job: Job, first: bool = False, dedupe: bool = True) -> None:
        """Store `job` in the stream; returns once JetStream has it. The first publish of a job is deduplicated
        by its id (a client retrying an accepted submit within 2 minutes adds nothing) unless not `dedupe`: an id
        the node made for this publish alone (nothing else can send it again) needs no JetStream message id,
        and the message then carries no header (less for JetStream to keep, and for every delivery to parse)."""
        msg_id = (job.id if dedupe else None) if first else f"{job.id}:{job.attempt}:{job.not_before!r}"
        try:
            if job.function not in self._subs:  # its consumer exists before its first job (counted by it)
                await self._consumer(job.function, self.stream, self.subject(job.function, "*"), f"fn-{job.function}")
            assert self._pub is not None
            await self._pub.publish(self.subject(job.function, job.id), _encode(job), self.stream, msg_id)
        except Exception as e:
            raise QueueUnavailable(f"the async queue (NATS JetStream at {self.url}) did not take the job: "
                                   f"{type(e).__name__}: {e}") from None

    async def ack_many(self, msgs: list[Any]) -> None:
        """Acknowledge held messages (as `msg.ack()` each: no round trip), in one write."""
        assert self._nc is not None
        # (a message without a reply is not JetStream's: an empty subject would be a protocol error)
        await publish_many(self._nc, [(m.reply, "", b"") for m in msgs if m.reply])
        for m in msgs:
            m._ackd = True

    async def fetch(self, function: str, n: int, timeout: float, max_bytes: int = 0) -> list[tuple[Job, Any]]:
        """Up to `n` jobs of `function` (with their messages), waiting at most `timeout` seconds for the first;
        from the function's durable consumer `fn-<name>`. With `max_bytes` > 0, only as many as fit in it (the
        messages' sizes: a job's payload and its encoding); `over_bytes(function)` tells when none did."""
        sub = await self._consumer(function, self.stream, self.subject(function, "*"), f"fn-{function}")
        return await self._pull(sub, n, timeout, _decode, max_bytes)

    def over_bytes(self, function: str) -> bool:
        """The last `fetch` of `function` returned nothing because its next job did not fit its `max_bytes`."""
        puller = self._subs.get(function)
        return puller is not None and puller.over_bytes

    async def take_waiting(self, job_id: str, now: float, skew: float = 2.0) -> Job | str | None:
        """A cancel: the job with this id out of the stream if no node has taken it — it will not run. None when
        it is not in the stream or some node holds it (running it, or waiting for an instance: the caller
        asks that node, `cancel_elsewhere`); "running" or "pending" when a node took it at that very moment
        and cancelled it itself when asked.

        A work-queue consumer delivers its subjects in stream order, so while the job's message exists, the
        consumer's last delivered stream sequence at or past it means a node took it. Not yet delivered: the
        message is deleted and the consumer read again; still short of it, no node ever had it. Past it then,
        a node may have taken it between the two reads, or the consumer just went on past the deleted
        message: the nodes are asked (`cancel_elsewhere`), and the one holding it, if any, cancels it. (A job
        that a node took and finished within that millisecond is reported cancelled though it ran.) A retry
        not due for `skew` seconds more is never held (a node that pulls it early hands it back until due),
        so it is deleted whatever the consumer delivered."""
        from nats.js.errors import NotFoundError

        try:
            raw = await self._js.get_last_msg(self.stream, self.subject("*", job_id))
            job = _decode(raw.data)
        except (NotFoundError, msgspec.DecodeError):
            return None
        consumer = f"fn-{job.function}"
        waiting_retry = job.not_before > now + skew
        if not waiting_retry and (await self._js.consumer_info(self.stream, consumer)).delivered.stream_seq >= raw.seq:
            return None
        try:
            await self._js.delete_msg(self.stream, raw.seq)
        except NotFoundError:  # settled in the meantime
            return None
        if not waiting_retry and (await self._js.consumer_info(self.stream, consumer)).delivered.stream_seq >= raw.seq:
            was = await self.cancel_elsewhere(job_id)
            if was:
                log.info("async queue: %s was taken by a node while being cancelled; cancelled there", job_id)
                return was
        return job

    async def take_all(self, function: str) -> list[tuple[Job, Any]]:
        """Every job of `function` no node holds right now (the function was deleted: the caller dead-letters
        them), in batches until the stream has none left to deliver."""
        out: list[tuple[Job, Any]] = []
        while True:
            got = await self.fetch(function, 256, timeout=0.2)
            if not got:
                return out
            out.extend(got)

    # -- embedded topics (topic and log triggers) -----------------------------------------------------------

    @property
    def topics_stream(self) -> str:
        return f"{self.stream}_TOPICS"

    async def topic_publish_many(self, subscribers: Sequence[str],
                                 msgs: Sequence[tuple[str, bytes, dict[str, str], float]]) -> None:
        """A copy of every message `(id, body, attributes, sent_at)` for every subscribing trigger; returns once
        JetStream stored them all (deduplicated by subscriber and message id)."""
        async def one(sub: str, m: tuple[str, bytes, dict[str, str], float]) -> None:
            assert self._pub is not None
            await self._pub.publish(f"{self.topics_stream}.{sub}", _encode(TopicMessage(*m)), self.topics_stream,
                                    f"{sub}:{m[0]}")

        try:
            await asyncio.gather(*(one(sub, m) for sub in subscribers for m in msgs))
        except Exception as e:
            raise QueueUnavailable(f"the async queue (NATS JetStream at {self.url}) did not take the message: "
                                   f"{type(e).__name__}: {e}") from None

    async def topic_fetch(self, subscriber: str, n: int, timeout: float) -> list[tuple[TopicMessage, Any]]:
        """Up to `n` of the trigger's messages, waiting at most `timeout` for the first; shared by the nodes
        through the trigger's durable consumer `t-<id>`."""
        sub = await self._consumer(f"topic:{subscriber}", self.topics_stream, f"{self.topics_stream}.{subscriber}",
                                   f"t-{subscriber}")
        return await self._pull(sub, n, timeout, _decode_topic)

    async def topic_drop(self, subscriber: str) -> None:
        """A deleted trigger: its copies go, and its consumer."""
        puller = self._subs.pop(f"topic:{subscriber}", None)
        if puller is not None:
            await puller.stop()
        try:
            await self._js.purge_stream(self.topics_stream, subject=f"{self.topics_stream}.{subscriber}")
            await self._js.delete_consumer(self.topics_stream, f"t-{subscriber}")
        except Exception as e:
            log.info("async queue: dropping %s's topic messages: %s", subscriber, e)

    async def get(self, job_id: str) -> Job | None:
        """The job with this id if it is in the stream (waiting, or held by some node), else None."""
        from nats.js.errors import NotFoundError

        try:
            raw = await self._js.get_last_msg(self.stream, self.subject("*", job_id))
        except NotFoundError:
            return None
        except Exception as e:
            log.warning("async queue: looking up %s in the stream failed: %s", job_id, e)
            return None
        try:
            return _decode(raw.data)
        except msgspec.DecodeError:
            return None

    async def counts(self) -> tuple[int, int]:
        """(jobs waiting for a node, jobs held by some node) across the cluster: the stream's messages, and
        its consumers' deliveries not yet acknowledged."""
        total = (await self._js.stream_info(self.stream)).state.messages
        held = sum(c.num_ack_pending for c in await self._js.consumers_info(self.stream))
        return total - held, held

    async def by_function(self) -> Counter[str]:
        """Jobs in the stream (waiting or held) per function, from the functions' consumers: one request
        whose reply grows with the number of functions, not of jobs (the stream's subject list is ~5 MB of
        JSON to parse at 100,000 queued jobs). NATS itself takes 0.1-0.2 s to count a 100,000-job backlog:
        read at scrape time only."""
        per: Counter[str] = Counter()
        for c in await self._js.consumers_info(self.stream):
            name = c.name or ""
            if name.startswith("fn-"):
                per[name[3:]] += c.num_pending + c.num_ack_pending
        return +per
