"""Async invocations: accept (durably), run through the one `Invoker` path, retry per the function's policy,
dead-letter, and POST results to callback URLs.

`AsyncQueue.submit` returns once the job is committed to the queue file (the public enqueue API, used by
the gateway, the invoke API and triggers); the dispatcher holds due jobs (bounded by `async_max_inflight`),
invokes each with the job id as its activation id (the same id on every attempt: the function's idempotency
key, also sent as `X-Polyfn-Idempotency-Key`), then completes the job (in a batch), schedules a retry
(`retry.decide`), or moves it to the dead-letter queue. Per invocation in the steady state: one row
inserted (shared group commit), one deleted (shared completion commit), no claim transaction.

With `queue_url` set, accepted jobs go to the cluster's NATS JetStream stream instead (`queue.jetstream`): a
second feed pulls them into the same holding, capacity and settling logic; the queue file still holds dead
letters, their replays and result callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from polyfn import jsontext
from polyfn.auth.callbacks import InvalidCallbackUrl, parse_callback_url
from polyfn.call import Call
from polyfn.config import Settings
from polyfn.errors import PolyfnError
from polyfn.invoker import new_activation_id
from polyfn.loops import one_item
from polyfn.observe.tracing import parse_traceparent
from polyfn.queue import retry
from polyfn.queue.builtin import Job, QueueDB
from polyfn.queue.callbacks import Callbacks
from polyfn.queue.capacity import PREFETCH, Ledger
from polyfn.queue.jetstream import JetStreamJobs, QueueUnavailable, keep_held

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

#: Seconds of work (by the function's average job time) a node holds beyond its capacity from the cluster's
#: stream: enough that pulls come in batches, short enough that other nodes are not kept waiting.
STREAM_PREFETCH_S = 0.05


class AsyncQueue:
    """The node's async queue: accepting (durably), dispatching, completing.

    A job is *held* by this node from its claim to its completion (`running` in the file: a crash puts it
    back to `pending`). Held jobs of a function invoke at most its capacity (max_instances × concurrency) at
    once; the others wait in memory, so none waits in the pool until it times out as throttled. When the
    queue has no due backlog, `submit` inserts the job already claimed (`running`, attempt 1) and starts it
    right after the commit: no claim transaction at all. Finished jobs go to one completion batch: one
    activation flush (the records must be stored before the jobs leave the queue), then one commit deletes
    them all and queues their callbacks.
    """

    def __init__(self, settings: Settings, invoker: Invoker, registry: FunctionRegistry,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock  # epoch seconds: due times, event ages, callbacks (tests pass their own)
        self.invoker = invoker
        self.registry = registry
        self.db: QueueDB = None  # type: ignore[assignment]
        # the cluster's job stream (queue_url set), and the jobs held from it with their messages, by job id
        self.jobs: JetStreamJobs | None = None
        self._msgs: dict[str, tuple[Job, Any]] = {}
        self._room_wake = asyncio.Event()  # room for more held jobs (wakes the stream feed)
        self._feed_task: asyncio.Task[None] | None = None
        self._took: dict[str, float] = {}  # function → moving average of its jobs' run time (s), stream jobs
        self._beat_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.ledger: Ledger[Job] = Ledger(settings.async_max_inflight, self._capacity)  # held, invoking, waiting
        # Functions that may have due pending jobs in the file (new jobs of theirs queue behind them), all
        # of them at start; and the same marks made while a claim runs (its view of the file may miss them).
        self._behind: set[str] = set()
        self._behind_all = True
        self._marked: set[str] = set()
        self._marked_all = False
        self._claiming = False
        self._next_due: float | None = None  # earliest retry not yet due
        self._done: list[tuple[Job, Outcome]] = []  # finished jobs waiting for the completion batch
        self._done_wake = asyncio.Event()
        self._done_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._done_task: asyncio.Task[None] | None = None
        self.callbacks = Callbacks(settings, clock)  # result callbacks, from the queue file (callbacks.py)
        self._stopping = False
        self.on_reply: Any = None  # set by the node: routes CloudEvents that functions reply with
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
        if self.settings.queue_url:
            self.jobs = JetStreamJobs(self.settings.queue_url, self.settings.queue_stream, self.settings.queue_ack_wait)
            try:
                await self.jobs.open()
            except BaseException:
                await self.db.close()
                raise
            self._feed_task = asyncio.create_task(self._feed_loop())
            self._beat_task = asyncio.create_task(keep_held(self._held_messages, self.settings.queue_ack_wait / 3))
        self.callbacks.start(self.db)
        self._loop_task = asyncio.create_task(self._dispatch_loop())
        self._done_task = asyncio.create_task(self._complete_loop())

    async def stop(self, timeout: float) -> None:
        """Stop claiming; held jobs that have not started go back to `pending`; running jobs finish
        (bounded) and are completed; jobs still running stay `running` in the file and run again at the
        next start."""
        self._stopping = True
        self._wake.set()
        await self.callbacks.stop_loop()
        for t in (self._loop_task, self._feed_task):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        waiting = self.ledger.drop_waiting()
        local = [j.id for j in waiting if j.id not in self._msgs]
        for _, msg in [self._msgs.pop(j.id) for j in waiting if j.id in self._msgs]:
            with contextlib.suppress(Exception):  # streamed jobs not started: another node takes them now
                await msg.nak()
        if local:
            with contextlib.suppress(Exception):
                await self.db.unclaim(local)
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
        if self._beat_task is not None:  # jobs still running go to another node once their ack_wait is over
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        if self.jobs is not None:
            await self.jobs.close()
        await self.callbacks.close()
        await self.db.close()

    def poke(self) -> None:
        """Jobs became due outside `submit` (e.g. a dead letter replayed): claim now."""
        self._mark_behind(None)
        self._wake.set()

    def _mark_behind(self, function: str | None) -> None:
        """`function` (None: any) may have due pending jobs in the file."""
        if function is None:
            self._behind_all = self._marked_all = True
        else:
            self._behind.add(function)
            self._marked.add(function)

    @property
    def inflight(self) -> int:
        """Jobs this node holds (invoking, waiting for capacity, or completing)."""
        return self.ledger.nheld

    # -- accepting ----------------------------------------------------------------------------------

    async def submit(self, function: str, kind: str, trigger: str, body: bytes, content_type: str,
                     headers: list[tuple[str, str]] | None = None, method: str = "POST", path: str = "/",
                     query: str = "", callback_url: str | None = None, job_id: str | None = None,
                     check: bool = True) -> str:
        """`enqueue` with the call's fields as arguments."""
        return await self.enqueue(Call(function, kind, trigger, method, path, query, headers, body, content_type),
                                  callback_url, job_id, check)

    async def enqueue(self, call: Call, callback_url: str | None = None, job_id: str | None = None,
                      check: bool = True) -> str:
        """Durably queue one call; returns its activation id once the job is committed. Raises `Rejected`."""
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
        # Time-ordered ids (like the invoker's): the jobs and activations primary keys stay append-mostly.
        job = Job.of(call, job_id or new_activation_id(), callback_url, self.clock())
        if self.jobs is not None:  # the cluster's stream: whichever node has room pulls it
            try:
                await self.jobs.publish(job, first=True)
            except QueueUnavailable as e:
                raise Rejected(503, "queue_unavailable", str(e)) from None
            return job.id
        direct = (not self._behind_all and function not in self._behind and not self._claiming
                  and not self._stopping and self._room(function) > 0)
        if direct:  # claimed at insert: it starts as soon as it is committed
            job.state, job.attempt = "running", 1
            self._hold(function)
        try:
            await self.db.enqueue([job])
        except BaseException:
            if direct:
                self._release(function)
            raise
        if direct:
            if self._stopping:  # the node began to stop during the commit: the job runs at the next start
                self._release(function)
                with contextlib.suppress(Exception):
                    await self.db.unclaim([job.id])
            else:
                self._start(job)
        else:
            self._mark_behind(function)
            if self._room(function) > 0:  # otherwise a completion of this function wakes the dispatcher
                self._wake.set()
        return job.id

    # -- holding ------------------------------------------------------------------------------------

    def _capacity(self, function: str) -> int:
        active = self.registry.get(function)
        if active is None:
            return 1 << 30  # unknown: let the job run (it goes to the dead-letter queue)
        spec = active.revision.spec
        return max(1, spec.max_instances * spec.concurrency)

    def _room(self, function: str) -> int:
        return self.ledger.room(function)

    def _hold(self, function: str) -> None:
        self.ledger.hold(function)

    def _release(self, function: str, completing: bool = False) -> None:
        """A held job is settled (see `Ledger.release`): room for a claim or a pull."""
        self.ledger.release(function, completing)
        self._wake.set()
        self._room_wake.set()

    def _completed(self, n: int) -> None:
        self.ledger.completed(n)
        self._wake.set()
        self._room_wake.set()

    def _start(self, job: Job) -> None:
        """Invoke a held job now if its function has capacity, else let it wait for a free slot."""
        if self.ledger.start(job.function, job):
            self._spawn(job)

    def _spawn(self, job: Job) -> None:
        t = asyncio.create_task(self._run(job))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _invoked(self, function: str) -> None:
        """An invocation of `function` ended: its slot goes to the next waiting job of the function."""
        for job in self.ledger.invoked(function, self._stopping):
            self._spawn(job)

    # -- dispatching --------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            try:
                await self._dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("async queue: dispatch failed; retrying in 1 s")
                self._claiming = False
                await asyncio.sleep(1)

    async def _dispatch_once(self) -> None:
        self._wake.clear()
        now = self.clock()
        free = self.ledger.free()
        due = self._next_due is not None and self._next_due <= now
        if self._behind_all or due:
            names: list[str] | None = None  # every function with pending jobs
        else:
            # Refill a function's prefetch when half of it is free, not at every finished job: claims
            # then come in batches.
            names = [f for f in self._behind if self._room(f) >= max(1, min(self.ledger.refill(f), free))]
        if free > 0 and (names is None or names):
            self._marked.clear()
            self._marked_all = False
            self._claiming = True
            try:
                got = await self.db.claim_ready(now, free, names, self._room)
            finally:
                self._claiming = False
            # Functions not looked at stay behind; so do jobs queued or rescheduled while the claim ran (its
            # view of the file may miss them).
            if names is not None:
                got.behind.update(self._behind.difference(names))
            self._behind = got.behind | self._marked
            self._behind_all = self._marked_all
            later = self._next_due if self._next_due is not None and self._next_due > now else None
            self._next_due = min((t for t in (got.next_due, later) if t is not None), default=None)
            for job in got.jobs:
                self._hold(job.function)
                self._start(job)
            free = self.ledger.free()
        # Wait for a change: a job released (room for a claim), a job queued, or the next retry's due time.
        wait = 1.0
        if free > 0 and self._next_due is not None:
            wait = min(max(self._next_due - self.clock(), 0.001), 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    # -- the cluster's stream -------------------------------------------------------------------------

    async def _feed_loop(self) -> None:
        """Keep one feeder per function this node serves (functions come and go with deploys and deletes)."""
        feeders: dict[str, asyncio.Task[None]] = {}
        try:
            while not self._stopping:
                for name in self.registry.functions:
                    if name not in feeders or feeders[name].done():
                        feeders[name] = asyncio.create_task(self._feed(name))
                for name in [n for n in feeders if n not in self.registry.functions]:
                    feeders.pop(name).cancel()
                await asyncio.sleep(1.0)
        finally:
            for t in feeders.values():
                t.cancel()
            await asyncio.gather(*feeders.values(), return_exceptions=True)

    def _stream_prefetch(self, function: str, cap: int) -> int:
        """Jobs of `function` this node holds beyond its capacity: about STREAM_PREFETCH_S of work (at least
        min(cap, 8), at most `PREFETCH`). Short jobs need a deep prefetch (one pull per few jobs would cap the
        rate: 3.7k jobs/s with 8, 7k with 32 in `bench/async.py`); long ones a shallow one, since a job
        waiting in one node's memory is a job an idle node cannot take."""
        took = self._took.get(function)
        floor = min(cap, 8)
        if took is None:
            return floor
        return max(floor, min(PREFETCH, int(cap * STREAM_PREFETCH_S / max(took, 1e-6))))

    async def _feed(self, function: str) -> None:
        """Pull `function`'s jobs from the stream while this node has room for them: its capacity here plus a
        prefetch sized by how long its jobs take (`_stream_prefetch`)."""
        assert self.jobs is not None
        while not self._stopping and self.registry.get(function) is not None:
            cap = self._capacity(function)
            room = min(cap + self._stream_prefetch(function, cap) - self.ledger.held.get(function, 0),
                       self.ledger.free())
            if room <= 0:
                self._room_wake.clear()
                await self._room_wake.wait()
                continue
            try:
                got = await self.jobs.fetch(function, min(room, PREFETCH), timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("async queue: pulling %s's jobs from the stream failed (%s); retrying in 1 s",
                            function, e)
                await asyncio.sleep(1)
                continue
            now = self.clock()
            for job, msg in got:
                with one_item(log, "async queue: taking job %s from the stream", job.id):
                    await self._take(job, msg, now)

    async def _take(self, job: Job, msg: Any, now: float) -> None:
        """Hold a job pulled from the stream and start it, or hand it back to the stream."""
        if job.not_before > now + 0.001:  # a retry not yet due: back to the stream until then
            with contextlib.suppress(Exception):
                await msg.nak(delay=job.not_before - now)
            return
        if job.id in self._msgs or self._stopping:
            # held here already (a redelivery, or a duplicate left by a crash between a retry's publish
            # and its acknowledgement): it comes back when the one held is settled, if it still exists
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.settings.queue_ack_wait)
            return
        job.state, job.attempt = "running", job.attempt + 1
        self._msgs[job.id] = (job, msg)
        self._hold(job.function)
        self._start(job)

    def _held_messages(self) -> list[Any]:
        return [msg for _, msg in self._msgs.values()]

    async def _ack(self, job_id: str) -> None:
        """A streamed job is settled here (completed, rescheduled or dead-lettered): it leaves the stream."""
        _, msg = self._msgs.pop(job_id, (None, None))
        if msg is not None:
            try:  # not ack_sync: a round trip per job would cap the rate; a lost ack means one more run
                await msg.ack()
            except Exception as e:  # it will run again somewhere after ack_wait (at least once)
                log.warning("async queue: acknowledging %s failed: %s", job_id, e)

    async def _reschedule(self, job: Job, at: float, err: dict[str, Any] | None, uncount: bool) -> None:
        """The job runs again at `at` (a retry, or after an unexpected failure)."""
        if job.id not in self._msgs:
            await self.db.reschedule(job.id, at, err, uncount=uncount)
            return
        again = msgspec.structs.replace(job, state="pending", not_before=at, last_error=err,
                                        attempt=job.attempt - 1 if uncount else job.attempt)
        assert self.jobs is not None
        await self.jobs.publish(again)  # first the new attempt, then the old one goes: never neither
        await self._ack(job.id)

    # -- running ------------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        settled = False
        try:
            t0 = time.perf_counter()
            try:
                out = await self._invoke(job)
            finally:
                self._invoked(job.function)  # the instance is free: the next waiting job may start
                if self.jobs is not None:  # how long this function's jobs take (sizes the stream prefetch)
                    took = time.perf_counter() - t0
                    avg = self._took.get(job.function)
                    self._took[job.function] = took if avg is None else avg + (took - avg) / 8
            settled = out is not None and await self._settle(job, out)
        except Exception as e:
            await self._unexpected(job, e)
        finally:
            if not settled:
                self._release(job.function)

    async def _unexpected(self, job: Job, e: Exception) -> None:
        """An error of the node's own with this job (not the function's outcome). The attempt counts: it runs
        again with backoff, and after UNEXPECTED_ATTEMPTS it is dead-lettered with the error (a job that can
        never run used to be retried every 5 s for its whole max_event_age without using up an attempt)."""
        what = f"{type(e).__name__}: {e}"[:1000]
        err = {"code": "internal_error", "message": what, "attempt": job.attempt}
        with one_item(log, "async queue: job %s failed unexpectedly (%s) and could not be rescheduled", job.id, what):
            if job.attempt >= UNEXPECTED_ATTEMPTS:
                log.error("async queue: job %s of %s failed unexpectedly %d times: %s", job.id, job.function,
                          job.attempt, what)
                await self._dead(job, f"internal_error: {what}", err)
                return
            log.exception("async queue: job %s of %s failed unexpectedly; it will run again", job.id, job.function)
            at = self.clock() + retry.backoff_delay(job.attempt, 5.0, 300.0)
            await self._reschedule(job, at, err, uncount=False)
            self._retry_at(job.function, at)
            return
        # a streamed job that could not be rescheduled (NATS away): no more heartbeats, so JetStream gives
        # it to a node again once its ack wait is over
        self._msgs.pop(job.id, None)
        self._retry_at(job.function, self.clock() + 5)

    async def _invoke(self, job: Job) -> Outcome | None:
        """One attempt; None when the job was dead-lettered without running."""
        active = self.registry.get(job.function)
        if active is None:
            await self._dead(job, "function_not_found", {"code": "function_not_found",
                                                          "message": f"function {job.function!r} does not exist"})
            return None
        spec = active.revision.spec
        if self.clock() - job.enqueued_at > spec.max_event_age:
            await self._dead(job, f"max_event_age exceeded ({spec.max_event_age:g} s)", job.last_error)
            return None
        headers = [*job.headers, ("x-polyfn-idempotency-key", job.id), ("x-polyfn-attempt", str(job.attempt))]
        # the enqueuing request's W3C traceparent (kept with the job's headers): the invocation joins its trace
        tp = next((v for k, v in job.headers if k.lower() == "traceparent"), "")
        trace_id, parent_id = parse_traceparent(tp) if tp else ("", "")
        revision = None
        pinned = next((v for k, v in job.headers if k.lower() == REVISION_HEADER), "")
        if pinned and not (pinned.isascii() and pinned.isdigit() and 0 < int(pinned) < 1 << 31):
            # can never run (only the node sets the header; a job queued before outside requests lost theirs)
            await self._dead(job, f"invalid_job: {REVISION_HEADER} {pinned[:40]!r} is not a revision number",
                             {"code": "invalid_job", "message": f"{REVISION_HEADER} {pinned[:40]!r} is not a revision "
                              "number"})
            return None
        if pinned and self.revision_lookup is not None:
            revision = await self.revision_lookup(job.function, int(pinned))
            if revision is None:
                await self._dead(job, "revision_not_found", {"code": "revision_not_found",
                                                             "message": f"revision {pinned} of {job.function!r} is gone"})
                return None
        return await self.invoker.call(job.call(headers, trace_id, parent_id, revision, active))

    async def _settle(self, job: Job, out: Outcome) -> bool:
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
            self._done.append((job, out))
            self._done_wake.set()
            self._release(job.function, completing=True)
            return True
        err["attempt"] = job.attempt
        if decision.action == "retry":
            at = self.clock() + decision.delay
            await self._reschedule(job, at, err, uncount=cls in ("throttle", "shutdown"))
            self._retry_at(job.function, at)
        else:
            await self._dead(job, decision.reason, err, out)
        return False

    def _retry_at(self, function: str, at: float) -> None:
        self._mark_behind(function)  # due at once (a shutdown retry) or soon
        if self._next_due is None or at < self._next_due:
            self._next_due = at
            self._wake.set()

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
        deletes the jobs and queues their callbacks. On failure the jobs stay held and are tried again."""
        async with self._done_lock:
            while self._done:
                batch, self._done = self._done, []
                try:
                    await self.invoker.recorder.flush()
                    now = self.clock()
                    callbacks = [(job.id, job.callback_url, *self.callbacks.payload(
                        job, out, "success" if out.status < 400 else "error")) for job, out in batch if job.callback_url]
                    await self.db.finish_many([job.id for job, _ in batch], callbacks, now)
                except BaseException:
                    self._done[:0] = batch
                    raise
                for job, _ in batch:
                    if job.id in self._msgs:
                        await self._ack(job.id)
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

    async def _dead(self, job: Job, reason: str, err: dict[str, Any] | None, out: Outcome | None = None) -> None:
        log.warning("async queue: %s for %s moved to the dead-letter queue: %s", job.id, job.function, reason)
        await self.db.bury(job, reason, err, self.clock())
        await self._ack(job.id)
        await self.callbacks.add(job, out, "dead_letter", reason)

    async def cancel(self, job_id: str) -> bool:
        """An accepted async invocation that has not started: to the dead-letter queue (reason `cancelled`,
        replayable) instead of running; its callback says so. Running attempts are the invoker's to cancel.
        The cluster's shared queue (JetStream) does not support it yet: False."""
        if self.jobs is not None:
            return False
        job = await self.db.cancel_pending(job_id, self.clock())
        if job is None:
            return False
        log.info("async queue: %s for %s cancelled before it ran", job.id, job.function)
        await self.callbacks.add(job, None, "dead_letter", "cancelled")
        return True

    async def function_deleted(self, function: str) -> int:
        """A function was deleted through this node. Its jobs in the cluster's stream go to the dead-letter
        queue, as the queue file's do when they come up (`function_not_found`), instead of waiting for a node
        that serves the name. Jobs other nodes hold are dead-lettered there when they find it gone. Returns
        how many were moved."""
        if self.jobs is None:
            return 0
        moved = 0
        for job, msg in await self.jobs.take_all(function):
            if job.id in self._msgs:  # held here (a redelivery): settled by the run that holds it
                continue
            self._msgs[job.id] = (job, msg)
            await self._dead(job, "function_not_found", {"code": "function_not_found",
                                                          "message": f"function {function!r} was deleted"})
            moved += 1
        # (its consumer stays: the jobs other nodes hold are acknowledged through it when they settle)
        return moved

    # -- embedded topics (topic and log triggers) --------------------------------------------------

    async def topic_publish_many(self, topic: str, subscribers: list[str],
                                 msgs: list[tuple[str, bytes, dict[str, str], float]]) -> None:
        """Store a copy of each message `(id, body, attributes, sent_at)` for every subscribing trigger: in the
        cluster's stream when there is one (any node's runner of the trigger takes them), else in the file."""
        if self.jobs is not None:
            await self.jobs.topic_publish_many(subscribers, msgs)
        else:
            await self.db.topic_publish_many(topic, subscribers, msgs)

    async def topic_drop_subscriber(self, subscriber: str) -> None:
        await self.db.topic_drop_subscriber(subscriber)
        if self.jobs is not None:
            await self.jobs.topic_drop(subscriber)

    # -- reading ------------------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Jobs by state (pending, running, dead): this node's queue file, plus, with the cluster's stream,
        its jobs waiting for a node (pending) and held by some node (running)."""
        counts = await self.db.counts()
        if self.jobs is not None:
            try:
                waiting, held = await self.jobs.counts()
            except Exception as e:
                log.warning("async queue: counting the stream's jobs failed: %s", e)
            else:
                counts["pending"] = counts.get("pending", 0) + waiting
                counts["running"] = counts.get("running", 0) + held
        return counts

    async def backlog(self) -> tuple[dict[str, int], dict[str, int]]:
        """(jobs queued or running, dead letters) per function, for the metrics: the queue file's, plus the
        cluster stream's jobs when there is one."""
        backlog, dead = await self.db.counts_by_function()
        if self.jobs is not None:
            try:
                for function, n in (await self.jobs.by_function()).items():
                    backlog[function] = backlog.get(function, 0) + n
            except Exception as e:
                log.warning("async queue: counting the stream's jobs failed: %s", e)
        return backlog, dead

    async def lookup(self, job_id: str) -> dict[str, Any] | None:
        """Queue state of an activation id: the job (if still queued or dead) and its callback, if any."""
        job = await self.db.get(job_id)
        if job is None and self.jobs is not None:  # held here (running), else waiting in the stream
            held = self._msgs.get(job_id)
            job = held[0] if held is not None else await self.jobs.get(job_id)
        cb = await self.db.get_callback(job_id)
        if job is None and cb is None:
            return None
        out: dict[str, Any] = {}
        if job is not None:
            out["job"] = job
        if cb is not None:
            out["callback"] = cb
        return out
