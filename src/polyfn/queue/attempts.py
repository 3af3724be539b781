"""One attempt of a held async job (the queue is dispatcher.py): the job's function and pinned revision looked
up, the call made through the invoker (the job id as its activation id, the attempt's headers, the enqueuing
request's trace), then settled by `retry.settle`: into the completion batch, run again later by its feed, or
dead-lettered; an event's CloudEvent reply routed on; an error of the node's own counted as an attempt.
`Attempts` is that part of `AsyncQueue` (a base class of it)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from polyfn import jsontext
from polyfn.loops import one_item
from polyfn.observe.tracing import parse_traceparent
from polyfn.queue import retry
from polyfn.queue.builtin import Job, QueueDB
from polyfn.queue.callbacks import Callbacks
from polyfn.queue.feed import Feed
from polyfn.tenancy import namespace_of

if TYPE_CHECKING:
    from polyfn.invoker import Invoker, Outcome
    from polyfn.model import Revision
    from polyfn.scheduler.registry import FunctionRegistry

log = logging.getLogger("polyfn.queue")

#: a job header pinning the invocation to one revision of the function (its number), e.g. a Lambda `Event`
#: invoke of a published version or an alias; without it a job runs whatever revision is current when it runs
REVISION_HEADER = "x-polyfn-revision"

#: Attempts of a job that fail with an error of the node's own (not the function's) before it is dead-lettered.
UNEXPECTED_ATTEMPTS = 3


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


class Attempts:
    """Reads the queue's invoker, registry, clock and hooks; hands a finished job to the completion batch
    (`_done`) and frees its function's slot (`_invoked`, `release`)."""

    invoker: Invoker
    registry: FunctionRegistry
    clock: Callable[[], float]
    db: QueueDB
    callbacks: Callbacks
    _done: list[tuple[Job, Feed, Outcome]]
    _done_wake: asyncio.Event
    _done_full: asyncio.Event
    _complete_at: int
    _invoked: Callable[[str, bool], tuple[Job, Feed] | None]
    on_reply: Any
    on_failure: Callable[[Job, str], None] | None
    revision_lookup: Callable[[str, int], Awaitable[Revision | None]] | None

    async def _run(self, job: Job, feed: Feed) -> None:
        """Attempt `job`, then, while its function has held jobs waiting for a slot, the next one in this same
        task: after a success (which settles without waiting) the next job's invocation starts in the same loop
        step, with no task made and no loop turn between one job's end and the next's start."""
        nxt: tuple[Job, Feed] | None = (job, feed)
        while nxt is not None:
            nxt = await self._attempt(*nxt)

    async def _attempt(self, job: Job, feed: Feed) -> tuple[Job, Feed] | None:
        """One attempt, settled; the waiting job this task runs next (its slot taken), if any."""
        settled = False
        nxt = None
        counted = job.attempt  # (attempts before this one: `_invoke` counts it when the invocation starts)
        try:
            t0 = time.perf_counter()
            out = None
            try:
                out = await self._invoke(job, feed)
            finally:
                # The instance is free: the next waiting job may start; after a success that routes no reply
                # (its settling does not wait) in this task, else in a task of its own.
                nxt = self._invoked(job.function, out is not None and out.status < 400 and job.trigger != "events")
                feed.ran(job, time.perf_counter() - t0)
            settled = out is not None and await self._settle(job, feed, out)
        except Exception as e:
            if job.attempt == counted:  # failed before its invocation started: the try counts all the same
                job.attempt += 1
            await self._unexpected(job, feed, e)
        finally:
            if not settled:
                self.release(job.function, len(job.body))
        return nxt

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
        # the enqueuing request's W3C traceparent (kept with the job's headers): the invocation joins its trace;
        # and the revision the job is pinned to (the first of each, read in one pass)
        tp = pinned = ""
        for k, v in job.headers:
            k = k.lower()
            if k == "traceparent":
                tp = tp or v
            elif k == REVISION_HEADER:
                pinned = pinned or v
        trace_id, parent_id = parse_traceparent(tp) if tp else ("", "")
        revision = None
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
        # The invocation starts: its attempt counts now (not when the job was claimed or pulled: a node killed with
        # jobs waiting in memory spends none of their attempts).
        feed.started(job)
        headers = [*job.headers, ("x-polyfn-idempotency-key", job.id), ("x-polyfn-attempt", str(job.attempt))]
        return await self.invoker.call(job.call(headers, trace_id, parent_id, revision, active))

    async def _settle(self, job: Job, feed: Feed, out: Outcome) -> bool:
        """Retry, dead-letter or complete an attempt: True when the job went to the completion batch (released
        from its function already)."""
        if out.status < 400:  # (what `retry.settle` decides for every status below 400: done, without asking it)
            return await self._succeeded(job, feed, out)
        code, err = outcome_error(out)
        if self.on_failure is not None:
            self.on_failure(job, retry.failure_reason(out.status, code))
        active = self.registry.get(job.function)
        cls, decision = retry.settle(out.status, code, job.attempt, self.clock() - job.enqueued_at,
                                     active.revision.spec if active is not None else None, err.get("errorType"))
        if decision.action == "done":
            return await self._succeeded(job, feed, out)
        err["attempt"] = job.attempt
        if decision.action == "retry":
            await feed.reschedule(job, self.clock() + decision.delay, err, uncount=cls in ("throttle", "shutdown"))
        else:
            await self._dead(job, feed, decision.reason, err, out)
        return False

    async def _succeeded(self, job: Job, feed: Feed, out: Outcome) -> bool:
        """Into the completion batch (its function's slot is free now)."""
        if job.trigger == "events" and out.status < 400 and self.on_reply is not None:
            await self._reply(job, out.body)
        done = self._done
        done.append((job, feed, out))
        self._done_wake.set()
        if len(done) >= self._complete_at:
            self._done_full.set()
        self.release(job.function, len(job.body), completing=True)
        return True

    async def _reply(self, job: Job, body: bytes) -> None:
        """A function invoked by an event replied with a CloudEvent: route it on (hop count bounded), to the
        `events` triggers of the function's own namespace only."""
        try:
            reply = jsontext.loads(body) if body[:1] == b"{" else None
        except ValueError:
            return
        if not (isinstance(reply, dict) and reply.get("specversion") and reply.get("type") and reply.get("source")):
            return
        reply.setdefault("id", uuid.uuid4().hex)
        hops = next((int(v) for k, v in job.headers if k == "x-polyfn-event-hops" and v.isdigit()), 0)
        try:
            await self.on_reply(reply, hops + 1, namespace_of(job.function))
        except Exception as e:
            log.warning("reply event of %s not routed: %s", job.id, e)

    async def _dead(self, job: Job, feed: Feed, reason: str, err: dict[str, Any] | None,
                    out: Outcome | None = None) -> None:
        log.warning("async queue: %s for %s moved to the dead-letter queue: %s", job.id, job.function, reason)
        await self.db.bury(job, reason, err, self.clock())
        await feed.settled([job])
        await self.callbacks.add(job, out, "dead_letter", reason)
