"""Async invocations: accept (durably), run through the one `Invoker` path, retry per the function's policy,
dead-letter, and POST results to callback URLs.

`AsyncQueue.enqueue` returns once the job is stored in the node's feed (the public enqueue API, used by the
gateway, the invoke API and triggers): the queue file, or with `queue_url` the cluster's NATS JetStream
stream (feed.py: one interface, `filefeed.FileFeed` and `streamfeed.StreamFeed`). The dispatcher holds the
due jobs its feeds hand over (bounded by `async_max_inflight`; the ledger in capacity.py), invokes each with
the job id as its activation id (the same id on every attempt: the function's idempotency key, also sent as
`X-Polyfn-Idempotency-Key`), then completes the job (in a batch), has its feed run it again later
(`retry.settle`), or moves it to the dead-letter queue. Per invocation in the steady state on the file: one
row inserted (shared group commit), one deleted (shared completion commit), no claim transaction. The queue
file keeps the dead letters, their replays and the result callbacks (callbacks.py) whatever the feed.

An attempt (invoke, settle, dead-letter, reply) is attempts.py's; cancelling jobs not yet started is cancels.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from polyfn.auth.callbacks import InvalidCallbackUrl, parse_callback_url
from polyfn.call import Call
from polyfn.config import Settings
from polyfn.errors import PolyfnError
from polyfn.invoker import new_activation_id
from polyfn.queue.attempts import REVISION_HEADER as REVISION_HEADER  # (the Lambda face pins jobs with it)
from polyfn.queue.attempts import Attempts
from polyfn.queue.builtin import Job, QueueDB
from polyfn.queue.callbacks import Callbacks
from polyfn.queue.cancels import Cancels
from polyfn.queue.capacity import Ledger
from polyfn.queue.feed import Feed
from polyfn.queue.filefeed import FileFeed
from polyfn.queue.jetstream import JetStreamJobs, QueueUnavailable
from polyfn.queue.streamfeed import StreamFeed

if TYPE_CHECKING:
    from polyfn.invoker import Invoker, Outcome
    from polyfn.model import Revision
    from polyfn.scheduler.registry import FunctionRegistry

log = logging.getLogger("polyfn.queue")

#: Seconds between two completion batches at most (a finished job leaves the queue that much later at worst;
#: its record is visible at once, readers flush the recorder): bigger batches, fewer writes under load. A batch
#: goes sooner once COMPLETE_BATCH jobs wait (a quarter of `async_max_inflight` at most: finished jobs count
#: against the node's held jobs until their batch is done).
COMPLETE_EVERY = 0.02
COMPLETE_BATCH = 64



class Rejected(PolyfnError):
    """The queue refused a job (unknown function, payload too large, bad callback URL, the cluster's stream
    away): a typed refusal the face that received the request serialises."""




class AsyncQueue(Attempts, Cancels):
    """The node's async queue: accepting (durably), holding, dispatching, settling, completing.

    Jobs wait in a feed (feed.py): the node's queue file (`FileFeed`), or with `queue_url` the cluster's
    stream (`StreamFeed`; the file's feed then still runs replayed dead letters). A job is *held* by this node
    from the moment its feed hands it over to its settling (`running` in the file: a crash puts it back to
    `pending`; unacknowledged in the stream: another node takes it after the ack wait). Held jobs of a
    function invoke at most its capacity (max_instances × concurrency) at once; the others wait in memory, so
    none waits in the pool until it times out as throttled. Finished jobs go to one completion batch: one
    activation flush (the records must be stored before the jobs leave the queue), then one commit deletes
    them all and queues their callbacks.
    """

    def __init__(self, settings: Settings, invoker: Invoker, registry: FunctionRegistry,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock  # epoch seconds: due times, event ages, callbacks (tests pass their own)
        self.invoker = invoker
        self.registry = registry
        # the queue file: the file's feed, dead letters, completion records, callbacks (opened by `start`)
        self.db: QueueDB = None  # type: ignore[assignment]
        self.file: FileFeed = None  # type: ignore[assignment]
        self.feeds: list[Feed] = []  # every feed jobs come from (the file's first)
        self.feed: Feed = None  # type: ignore[assignment]  # where accepted jobs go
        # the cluster's stream connection (queue_url set), for the others that share it: health, the cluster
        # sync's change notices, topic runners
        self.jobs: JetStreamJobs | None = None
        self.ledger: Ledger[tuple[Job, Feed]] = Ledger(settings.async_max_inflight, self.capacity,
                                                        settings.async_max_held_bytes)
        self._done: list[tuple[Job, Feed, Outcome]] = []  # finished jobs waiting for the completion batch
        self._done_wake = asyncio.Event()
        self._done_full = asyncio.Event()  # `_complete_at` jobs wait: the batch goes now
        self._complete_at = max(1, min(COMPLETE_BATCH, settings.async_max_inflight // 4))
        self._done_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._done_task: asyncio.Task[None] | None = None
        self.callbacks = Callbacks(settings, clock)  # result callbacks, from the queue file (callbacks.py)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_reply: Any = None  # set by the node: routes CloudEvents that functions reply with
        self.admit_job: Callable[[str], Awaitable[None]] | None = None  # set by the node: a namespace's backlog quota
        # set by the node: (function, revision number) -> Revision | None, for jobs pinned to a revision
        # (a Lambda `Event` invoke of a version or alias carries `x-polyfn-revision`)
        self.revision_lookup: Callable[[str, int], Awaitable[Revision | None]] | None = None
        # set by the node: (job, reason) for every failed attempt of a trigger-made job (trigger error counter)
        self.on_failure: Callable[[Job, str], None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()  # (asyncio.create_task asks for it with a getpid() each time)
        self.db = await QueueDB.open(self.settings.data_dir / "queue.db", self.settings.queue_sync)
        recovered = await self.db.recover()
        await self.db.topic_recover()
        if recovered:
            log.info("async queue: %d interrupted invocation(s) will run again", recovered)
        self.file = FileFeed(self.db, self, self.clock)
        self.feeds = [self.file]
        if self.settings.queue_url:
            self.jobs = JetStreamJobs(self.settings.queue_url, self.settings.queue_stream, self.settings.queue_ack_wait)
            stream = StreamFeed(self.jobs, self, self.registry)
            try:
                await stream.open()
            except BaseException:
                await self.db.close()
                raise
            self.feeds.append(stream)
        self.feed = self.feeds[-1]
        if self.jobs is not None:
            await self.jobs.on_cancels(self._cancel_here)
        self.callbacks.start(self.db)
        for feed in self.feeds:
            feed.start()
        self._done_task = asyncio.create_task(self._complete_loop())

    async def stop(self, timeout: float) -> None:
        """Stop taking jobs; held jobs that have not started go back to their feed; running jobs finish
        (bounded) and are completed; jobs still running stay held (`running` in the file: they run again at
        the next start; in the stream: another node takes them after the ack wait)."""
        self._stopping = True
        await self.callbacks.stop_loop()
        for feed in self.feeds:
            await feed.stop()
        waiting = self.ledger.drop_waiting()
        for feed in self.feeds:
            mine = [job for job, f in waiting if f is feed]
            if mine:
                await feed.give_back(mine)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for t in list(self._tasks):
            t.cancel()
        if self._done_task is not None:
            self._done_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._done_task
        with contextlib.suppress(Exception):
            await self._complete()
        for feed in reversed(self.feeds):
            await feed.close()
        await self.callbacks.close()
        await self.db.close()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def poke(self) -> None:
        """Jobs became due in the queue file outside `submit` (e.g. a dead letter replayed): claim now."""
        self.file.poke()

    @property
    def inflight(self) -> int:
        """Jobs this node holds (invoking, waiting for capacity, or completing)."""
        return self.ledger.nheld

    # -- accepting ----------------------------------------------------------------------------------

    async def enqueue(self, call: Call, callback_url: str | None = None, job_id: str | None = None,
                      check: bool = True) -> str:
        """Durably queue one call; returns its activation id once the job is stored. Raises `Rejected`."""
        function = call.function
        if check:
            if call.active is None and self.registry.get(function) is None:
                raise Rejected(404, "function_not_found", f"function {function!r} does not exist")
            if len(call.body) > self.settings.max_payload:
                raise Rejected(413, "payload_too_large",
                               f"the payload is {len(call.body)} bytes; the limit is {self.settings.max_payload}")
            if callback_url is not None:
                try:
                    parse_callback_url(callback_url)
                except InvalidCallbackUrl as e:
                    raise Rejected(400, "invalid_callback_url", str(e)) from None
            if self.admit_job is not None:  # its namespace's async backlog quota (quotas.py): raises Rejected
                await self.admit_job(function)
        # Time-ordered ids (like the invoker's): the jobs and activations primary keys stay append-mostly.
        job = Job.of(call, job_id or new_activation_id(), callback_url, self.clock())
        try:
            await self.feed.accept(job, job_id is not None)
        except QueueUnavailable as e:
            raise Rejected(503, "queue_unavailable", str(e)) from None
        return job.id

    # -- holding (the feeds' `Holder`) --------------------------------------------------------------

    def capacity(self, function: str) -> int:
        active = self.registry.get(function)
        if active is None:
            return 1 << 30  # unknown: let the job run (it goes to the dead-letter queue)
        spec = active.revision.spec
        return max(1, spec.max_instances * spec.concurrency)

    def hold(self, function: str, size: int) -> None:
        self.ledger.hold(function, size)

    def release(self, function: str, size: int, completing: bool = False) -> None:
        """A held job (its payload `size` bytes) is settled (see `Ledger.release`): room for a claim or a pull."""
        self.ledger.release(function, size, completing)
        for feed in self.feeds:
            feed.room_freed()

    def _completed(self, n: int, size: int) -> None:
        self.ledger.completed(n, size)
        for feed in self.feeds:
            feed.room_freed()

    def dispatch(self, job: Job, feed: Feed, reserved: bool = False) -> None:
        """Invoke a held job now if its function has capacity (`reserved`: its slot is taken already), else let it
        wait for a free slot."""
        if reserved or self.ledger.start(job.function, (job, feed)):
            self._spawn(job, feed)

    def _spawn(self, job: Job, feed: Feed) -> None:
        loop = self._loop
        t = loop.create_task(self._run(job, feed)) if loop is not None else asyncio.create_task(self._run(job, feed))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _invoked(self, function: str, keep: bool = False) -> tuple[Job, Feed] | None:
        """An invocation of `function` ended: its slot goes to the next waiting job of the function, started in
        a task of its own, or with `keep` returned to run in the caller's task (attempts.py `_run`)."""
        nxt = self.ledger.invoked(function, self._stopping)
        if not nxt:
            return None
        first = nxt[0] if keep else None
        for job, feed in nxt[1:] if keep else nxt:
            self._spawn(job, feed)
        return first

    # -- completing ---------------------------------------------------------------------------------

    async def _complete_loop(self) -> None:
        last = 0.0
        while True:
            await self._done_wake.wait()
            # Batches at most every COMPLETE_EVERY seconds, or as soon as `_complete_at` jobs wait: each is one
            # activation write and one queue commit (or acknowledgements) for tens of jobs instead of a few (the
            # jobs are done; only their leaving waits). (A write of a few records cost the activation writer
            # ~4 times a record's share of a large one.)
            wait = last + COMPLETE_EVERY - time.monotonic()
            if wait > 0 and not self._stopping and len(self._done) < self._complete_at:
                self._done_full.clear()
                timer = self._loop.call_later(wait, self._done_full.set) if self._loop is not None else None
                try:
                    await self._done_full.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
            last = time.monotonic()
            self._done_wake.clear()
            try:
                await self._complete()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("async queue: completing finished jobs failed; retrying in 1 s")
                await asyncio.sleep(1)
                self._done_wake.set()

    async def _complete(self) -> None:
        """Every finished job so far, in one batch: the activation records are stored first (a kill -9
        between the two would otherwise lose the record of an invocation that ran), then one commit
        deletes the jobs and queues their callbacks; then they leave their feeds. On failure the jobs stay
        held and are tried again."""
        async with self._done_lock:
            while self._done:
                batch, self._done = self._done, []
                try:
                    # The records first (durability); the metered usage sums are written on the recorder's own
                    # schedule, as for every other invocation (a usage upsert per batch of finished jobs was
                    # a third of the queue's own CPU at a few thousand jobs a second).
                    await self.invoker.recorder.flush(background=True)
                    now = self.clock()
                    callbacks = [(job.id, job.callback_url, *self.callbacks.payload(
                        job, out, "success" if out.status < 400 else "error")) for job, _, out in batch
                        if job.callback_url]
                    # (the cluster stream's jobs have no row in the file: they leave the stream in `settled`)
                    file = self.file
                    mine = [job.id for job, f, _ in batch if f is file]
                    if mine or callbacks:
                        await self.db.finish_many(mine, callbacks, now)
                except BaseException:
                    self._done[:0] = batch
                    raise
                for feed in self.feeds:
                    await feed.settled([job for job, f, _ in batch if f is feed])
                self._completed(len(batch), sum(len(job.body) for job, _, _ in batch))
                if callbacks:
                    self.callbacks.wake()

    # -- embedded topics (topic and log triggers) --------------------------------------------------

    async def topic_publish_many(self, topic: str, subscribers: list[str],
                                 msgs: list[tuple[str, bytes, dict[str, str], float]]) -> None:
        """Store a copy of each message `(id, body, attributes, sent_at)` for every subscribing trigger, in the
        feed accepted jobs go to (the cluster's stream: any node's runner of the trigger takes them)."""
        await self.feed.topic_publish_many(topic, subscribers, msgs)

    async def topic_drop_subscriber(self, subscriber: str) -> None:
        for feed in self.feeds:
            await feed.topic_drop(subscriber)

    # -- reading ------------------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Jobs by state (pending, running, dead): this node's queue file, plus, with the cluster's stream,
        its jobs waiting for a node (pending) and held by some node (running)."""
        counts: dict[str, int] = {}
        for feed in self.feeds:
            for state, n in (await feed.counts()).items():
                counts[state] = counts.get(state, 0) + n
        return counts

    async def backlog(self) -> tuple[dict[str, int], dict[str, int]]:
        """(jobs queued or running, dead letters) per function, for the metrics: the queue file's, plus the
        cluster stream's jobs when there is one."""
        backlog: dict[str, int] = {}
        dead: dict[str, int] = {}
        for feed in self.feeds:
            queued, buried = await feed.backlog()
            for into, part in ((backlog, queued), (dead, buried)):
                for function, n in part.items():
                    into[function] = into.get(function, 0) + n
        return backlog, dead

    async def lookup(self, job_id: str) -> dict[str, Any] | None:
        """Queue state of an activation id: the job (if still queued or dead) and its callback, if any."""
        job = None
        for feed in self.feeds:  # the file first: it also holds the dead letters
            job = await feed.get(job_id)
            if job is not None:
                break
        cb = await self.db.get_callback(job_id)
        if job is None and cb is None:
            return None
        out: dict[str, Any] = {}
        if job is not None:
            out["job"] = job
        if cb is not None:
            out["callback"] = cb
        return out
