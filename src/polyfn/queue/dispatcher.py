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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from polyfn import jsontext
from polyfn.auth.callbacks import InvalidCallbackUrl, parse_callback_url
from polyfn.call import Call
from polyfn.config import Settings
from polyfn.errors import PolyfnError
from polyfn.invoker import new_activation_id
from polyfn.loops import one_item
from polyfn.observe.tracing import parse_traceparent
from polyfn.queue import retry
from polyfn.queue.builtin import CANCELLED, Job, QueueDB
from polyfn.queue.callbacks import Callbacks
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

#: a job header pinning the invocation to one revision of the function (its number), e.g. a Lambda `Event`
#: invoke of a published version or an alias; without it a job runs whatever revision is current when it runs
REVISION_HEADER = "x-polyfn-revision"


class Rejected(PolyfnError):
    """The queue refused a job (unknown function, payload too large, bad callback URL, the cluster's stream
    away): a typed refusal the face that received the request serialises."""


def outcome_error(out: Outcome) -> tuple[str | None, dict[str, Any]]:
    """The platform error code (X-Polyfn-Error) and a compact error record of a failed outcome."""
    if out.error is not None:  # the platform's own error, typed by the invoker: nothing to parse
        code = out.error.get("code")
        err: dict[str, Any] = {"status_code": out.status, "code": code or "function_error"}
        if out.error.get("message"):
            err["message"] = str(out.error["message"])[:1000]
        if isinstance(out.error.get("errorType"), str):  # a failed start's init error type (permanent or not)
            err["errorType"] = out.error["errorType"][:200]
        return code, err
    code = None
    for k, v in out.headers:
        if k == b"x-polyfn-error":
            code = v.decode()
    err = {"status_code": out.status, "code": code or "function_error"}
    try:
        body = jsontext.loads(out.body)
        if isinstance(body, dict):
            e = body.get("error") if isinstance(body.get("error"), dict) else body
            msg = e.get("message") or e.get("errorMessage")
            if msg:
                err["message"] = str(msg)[:1000]
            if isinstance(e.get("errorType"), str):
                err["errorType"] = e["errorType"][:200]
    except ValueError:
        if out.body:
            err["message"] = out.body[:1000].decode("utf-8", "replace")
    return code, err


#: Attempts of a job that fail with an error of the node's own (not the function's) before it is dead-lettered.
UNEXPECTED_ATTEMPTS = 3


class AsyncQueue:
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
        self.ledger: Ledger[tuple[Job, Feed]] = Ledger(settings.async_max_inflight, self.capacity)
        self._done: list[tuple[Job, Feed, Outcome]] = []  # finished jobs waiting for the completion batch
        self._done_wake = asyncio.Event()
        self._done_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._done_task: asyncio.Task[None] | None = None
        self.callbacks = Callbacks(settings, clock)  # result callbacks, from the queue file (callbacks.py)
        self._stopping = False
        self.on_reply: Any = None  # set by the node: routes CloudEvents that functions reply with
        self.admit_job: Callable[[str], Awaitable[None]] | None = None  # set by the node: a namespace's backlog quota
        # set by the node: (function, revision number) -> Revision | None, for jobs pinned to a revision
        # (a Lambda `Event` invoke of a version or alias carries `x-polyfn-revision`)
        self.revision_lookup: Callable[[str, int], Awaitable[Revision | None]] | None = None
        # set by the node: (job, reason) for every failed attempt of a trigger-made job (trigger error counter)
        self.on_failure: Callable[[Job, str], None] | None = None

    async def start(self) -> None:
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
            await self.feed.accept(job)
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

    def hold(self, function: str) -> None:
        self.ledger.hold(function)

    def release(self, function: str, completing: bool = False) -> None:
        """A held job is settled (see `Ledger.release`): room for a claim or a pull."""
        self.ledger.release(function, completing)
        for feed in self.feeds:
            feed.room_freed()

    def _completed(self, n: int) -> None:
        self.ledger.completed(n)
        for feed in self.feeds:
            feed.room_freed()

    def dispatch(self, job: Job, feed: Feed) -> None:
        """Invoke a held job now if its function has capacity, else let it wait for a free slot."""
        if self.ledger.start(job.function, (job, feed)):
            self._spawn(job, feed)

    def _spawn(self, job: Job, feed: Feed) -> None:
        t = asyncio.create_task(self._run(job, feed))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _invoked(self, function: str) -> None:
        """An invocation of `function` ended: its slot goes to the next waiting job of the function."""
        for job, feed in self.ledger.invoked(function, self._stopping):
            self._spawn(job, feed)

    # -- running ------------------------------------------------------------------------------------

    async def _run(self, job: Job, feed: Feed) -> None:
        settled = False
        try:
            t0 = time.perf_counter()
            try:
                out = await self._invoke(job, feed)
            finally:
                self._invoked(job.function)  # the instance is free: the next waiting job may start
                feed.ran(job.function, time.perf_counter() - t0)
            settled = out is not None and await self._settle(job, feed, out)
        except Exception as e:
            await self._unexpected(job, feed, e)
        finally:
            if not settled:
                self.release(job.function)

    async def _unexpected(self, job: Job, feed: Feed, e: Exception) -> None:
        """An error of the node's own with this job (not the function's outcome). The attempt counts: it runs
        again with backoff, and after UNEXPECTED_ATTEMPTS it is dead-lettered with the error (a job that can
        never run used to be retried every 5 s for its whole max_event_age without using up an attempt)."""
        what = f"{type(e).__name__}: {e}"[:1000]
        err = {"code": "internal_error", "message": what, "attempt": job.attempt}
        with one_item(log, "async queue: job %s failed unexpectedly (%s) and could not be rescheduled", job.id, what):
            if job.attempt >= UNEXPECTED_ATTEMPTS:
                log.error("async queue: job %s of %s failed unexpectedly %d times: %s", job.id, job.function,
                          job.attempt, what)
                await self._dead(job, feed, f"internal_error: {what}", err)
                return
            log.exception("async queue: job %s of %s failed unexpectedly; it will run again", job.id, job.function)
            await feed.reschedule(job, self.clock() + retry.backoff_delay(job.attempt, 5.0, 300.0), err, uncount=False)
            return
        feed.lost(job)

    async def _invoke(self, job: Job, feed: Feed) -> Outcome | None:
        """One attempt; None when the job was dead-lettered without running."""
        active = self.registry.get(job.function)
        if active is None:
            await self._dead(job, feed, "function_not_found", {
                "code": "function_not_found", "message": f"function {job.function!r} does not exist"})
            return None
        spec = active.revision.spec
        if self.clock() - job.enqueued_at > spec.max_event_age:
            await self._dead(job, feed, f"max_event_age exceeded ({spec.max_event_age:g} s)", job.last_error)
            return None
        headers = [*job.headers, ("x-polyfn-idempotency-key", job.id), ("x-polyfn-attempt", str(job.attempt))]
        # the enqueuing request's W3C traceparent (kept with the job's headers): the invocation joins its trace
        tp = next((v for k, v in job.headers if k.lower() == "traceparent"), "")
        trace_id, parent_id = parse_traceparent(tp) if tp else ("", "")
        revision = None
        pinned = next((v for k, v in job.headers if k.lower() == REVISION_HEADER), "")
        if pinned and not (pinned.isascii() and pinned.isdigit() and 0 < int(pinned) < 1 << 31):
            # can never run (only the node sets the header; a job queued before outside requests lost theirs)
            await self._dead(job, feed, f"invalid_job: {REVISION_HEADER} {pinned[:40]!r} is not a revision number",
                             {"code": "invalid_job", "message": f"{REVISION_HEADER} {pinned[:40]!r} is not a revision "
                              "number"})
            return None
        if pinned and self.revision_lookup is not None:
            revision = await self.revision_lookup(job.function, int(pinned))
            if revision is None:
                await self._dead(job, feed, "revision_not_found", {
                    "code": "revision_not_found", "message": f"revision {pinned} of {job.function!r} is gone"})
                return None
        return await self.invoker.call(job.call(headers, trace_id, parent_id, revision, active))

    async def _settle(self, job: Job, feed: Feed, out: Outcome) -> bool:
        """Retry, dead-letter or complete an attempt: True when the job went to the completion batch (released
        from its function already)."""
        code, err = outcome_error(out) if out.status >= 400 else (None, {})
        if out.status >= 400 and self.on_failure is not None:
            self.on_failure(job, retry.failure_reason(out.status, code))
        active = self.registry.get(job.function)
        cls, decision = retry.settle(out.status, code, job.attempt, self.clock() - job.enqueued_at,
                                     active.revision.spec if active is not None else None, err.get("errorType"))
        if decision.action == "done":
            if job.trigger == "events" and out.status < 400 and self.on_reply is not None:
                await self._reply(job, out.body)
            self._done.append((job, feed, out))
            self._done_wake.set()
            self.release(job.function, completing=True)
            return True
        err["attempt"] = job.attempt
        if decision.action == "retry":
            await feed.reschedule(job, self.clock() + decision.delay, err, uncount=cls in ("throttle", "shutdown"))
        else:
            await self._dead(job, feed, decision.reason, err, out)
        return False

    # -- completing ---------------------------------------------------------------------------------

    async def _complete_loop(self) -> None:
        while True:
            await self._done_wake.wait()
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
                    await self.db.finish_many([job.id for job, _, _ in batch], callbacks, now)
                except BaseException:
                    self._done[:0] = batch
                    raise
                for feed in self.feeds:
                    await feed.settled([job for job, f, _ in batch if f is feed])
                self._completed(len(batch))
                if callbacks:
                    self.callbacks.wake()

    async def _reply(self, job: Job, body: bytes) -> None:
        """A function invoked by an event replied with a CloudEvent: route it on (hop count bounded)."""
        try:
            reply = jsontext.loads(body) if body[:1] == b"{" else None
        except ValueError:
            return
        if not (isinstance(reply, dict) and reply.get("specversion") and reply.get("type") and reply.get("source")):
            return
        reply.setdefault("id", uuid.uuid4().hex)
        hops = next((int(v) for k, v in job.headers if k == "x-polyfn-event-hops" and v.isdigit()), 0)
        try:
            await self.on_reply(reply, hops + 1)
        except Exception as e:
            log.warning("reply event of %s not routed: %s", job.id, e)

    async def _dead(self, job: Job, feed: Feed, reason: str, err: dict[str, Any] | None,
                    out: Outcome | None = None) -> None:
        log.warning("async queue: %s for %s moved to the dead-letter queue: %s", job.id, job.function, reason)
        await self.db.bury(job, reason, err, self.clock())
        await feed.settled([job])
        await self.callbacks.add(job, out, "dead_letter", reason)

    async def cancel(self, job_id: str) -> str | None:
        """An accepted async invocation that has not started — waiting in a feed, or held here waiting for a
        free instance — goes to the dead-letter queue (reason `cancelled`, replayable) instead of running; its
        callback says so. Returns "pending" (or what another node that had just taken it from the cluster's
        stream did: "running" / "pending"), None when it is not waiting. Running attempts are the invoker's
        to cancel. Every feed is asked: a node on the cluster's stream still runs replayed dead letters from
        its file."""
        now = self.clock()
        held = self.ledger.withdraw(lambda h: h[0].id == job_id)
        if held is not None:  # held here, waiting for a free instance: out of its line, dead-lettered, settled
            job, feed = held
            job.attempt -= 1  # it never ran
            try:
                await self.db.bury(job, "cancelled", dict(CANCELLED), now)
                await feed.settled([job])
            except BaseException:
                job.attempt += 1
                self.dispatch(job, feed)  # back in its line
                raise
            self.release(job.function)
        else:
            for feed in self.feeds:
                got = await feed.cancel(job_id, now)
                if got is not None:
                    break
            else:
                return None
            if isinstance(got, str):  # cancelled by the node that had just taken it (dead letter, callback)
                return got
            job = got
            if job.state != "dead":  # taken out of the cluster's stream: its dead letter goes to the queue file
                await self.db.bury(job, "cancelled", dict(CANCELLED), now)
        log.info("async queue: %s for %s cancelled before it ran", job.id, job.function)
        await self.callbacks.add(job, None, "dead_letter", "cancelled")
        return "pending"

    async def _cancel_here(self, activation_id: str) -> str | None:
        """Another node's cancel (`cancel_elsewhere`): the invocation running here is stopped, or the job held
        or queued here goes to the dead-letter queue; None when this node does not have it."""
        if self.invoker.cancel(activation_id):
            return "running"
        return await self.cancel(activation_id)

    async def cancel_elsewhere(self, activation_id: str) -> str | None:
        """Cancel an invocation another node of the cluster runs or holds (the cluster's stream only): "running"
        or "pending" as that node answered, None when none had it."""
        return None if self.jobs is None else await self.jobs.cancel_elsewhere(activation_id)

    async def function_deleted(self, function: str) -> int:
        """A function was deleted through this node. Its jobs waiting in a feed that other nodes share (the
        cluster's stream) go to the dead-letter queue now, as the queue file's do when they come up
        (`function_not_found`), instead of waiting for a node that serves the name. Returns how many were
        moved."""
        moved = 0
        for feed in self.feeds:
            for job in await feed.deleted(function):
                await self._dead(job, feed, "function_not_found", {
                    "code": "function_not_found", "message": f"function {function!r} was deleted"})
                moved += 1
        return moved

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
