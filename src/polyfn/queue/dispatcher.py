"""Async invocations: accept (durably), run through the one `Invoker` path, retry per the function's policy,
dead-letter, and POST results to callback URLs.

`AsyncQueue.submit` returns once the job is committed to the queue file; the dispatcher claims due jobs
(bounded by `async_max_inflight`), invokes each with the job id as its activation id (the same id on every
attempt: the function's idempotency key, also sent as `X-Polyfn-Idempotency-Key`), then deletes the job,
schedules a retry (`retry.decide`), or moves it to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from polyfn.config import Settings
from polyfn.observe.tracing import parse_traceparent
from polyfn.queue import retry
from polyfn.queue.builtin import Job, QueueDB

if TYPE_CHECKING:
    from polyfn.invoker import Invoker, Outcome
    from polyfn.scheduler.registry import FunctionRegistry

log = logging.getLogger("polyfn.queue")


#: trigger name → callback shape (job, outcome or None, status, reason) → (body, headers), for callers that
#: expect a vendor's callback instead of polyfn's JSON result (OpenFaaS async: api/compat/openfaas.py registers
#: its shape when installed). Module-level so jobs queued before a restart get the same shape after it.
CALLBACK_FORMATS: dict[str, Any] = {}


class Rejected(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def outcome_error(out: Outcome) -> tuple[str | None, dict[str, Any]]:
    """The platform error code (X-Polyfn-Error) and a compact error record of a failed outcome."""
    code = None
    for k, v in out.headers:
        if k == b"x-polyfn-error":
            code = v.decode()
    err: dict[str, Any] = {"status_code": out.status, "code": code or "function_error"}
    try:
        body = json.loads(out.body)
        if isinstance(body, dict):
            e = body.get("error") if isinstance(body.get("error"), dict) else body
            msg = e.get("message") or e.get("errorMessage")
            if msg:
                err["message"] = str(msg)[:1000]
    except ValueError:
        if out.body:
            err["message"] = out.body[:1000].decode("utf-8", "replace")
    return code, err


class AsyncQueue:
    def __init__(self, settings: Settings, invoker: Invoker, registry: FunctionRegistry):
        self.settings = settings
        self.invoker = invoker
        self.registry = registry
        self.db: QueueDB = None  # type: ignore[assignment]
        self._wake = asyncio.Event()
        self._free = settings.async_max_inflight  # slots for running jobs (a plain counter: cheap to take in bulk)
        self._slot_freed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running: dict[str, int] = {}  # function → async invocations running now
        self._loop_task: asyncio.Task[None] | None = None
        self._cb_task: asyncio.Task[None] | None = None
        self._cb_wake = asyncio.Event()
        self._stopping = False
        self._http: httpx.AsyncClient | None = None
        self.on_reply: Any = None  # set by the node: routes CloudEvents that functions reply with

    async def start(self) -> None:
        self.db = await QueueDB.open(self.settings.data_dir / "queue.db")
        recovered = await self.db.recover()
        await self.db.topic_recover()
        if recovered:
            log.info("async queue: %d interrupted invocation(s) will run again", recovered)
        self._http = httpx.AsyncClient(timeout=self.settings.callback_timeout)
        self._loop_task = asyncio.create_task(self._dispatch_loop())
        self._cb_task = asyncio.create_task(self._callback_loop())

    async def stop(self, timeout: float) -> None:
        """Stop claiming; let running jobs finish (bounded); jobs still running stay `running` in the file
        and run again at the next start."""
        self._stopping = True
        self._wake.set()
        self._cb_wake.set()
        for t in (self._loop_task, self._cb_task):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for t in list(self._tasks):
            t.cancel()
        if self._http is not None:
            await self._http.aclose()
        await self.db.close()

    def poke(self) -> None:
        """Jobs became due outside `submit` (e.g. a dead letter replayed): claim now."""
        self._wake.set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    # -- accepting ----------------------------------------------------------------------------------

    async def submit(self, function: str, kind: str, trigger: str, body: bytes, content_type: str,
                     headers: list[tuple[str, str]] | None = None, method: str = "POST", path: str = "/",
                     query: str = "", callback_url: str | None = None, job_id: str | None = None,
                     check: bool = True) -> str:
        """Durably queue one invocation; returns its activation id."""
        if check:
            if self.registry.get(function) is None:
                raise Rejected(404, "function_not_found", f"function {function!r} does not exist")
            if len(body) > self.settings.max_payload:
                raise Rejected(413, "payload_too_large",
                               f"the payload is {len(body)} bytes; the limit is {self.settings.max_payload}")
            if callback_url is not None and not callback_url.startswith(("http://", "https://")):
                raise Rejected(400, "invalid_callback_url",
                               f"X-Callback-Url must be an http(s) URL, not {callback_url!r}")
        now = time.time()
        job = Job(id=job_id or uuid.uuid4().hex, function=function, kind=kind, trigger=trigger, method=method,
                  path=path, query=query, headers=headers or [], body=body, content_type=content_type,
                  callback_url=callback_url, enqueued_at=now, not_before=now)
        await self.db.enqueue([job])
        self._wake.set()
        return job.id

    # -- running ------------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            try:
                await self._dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("async queue: dispatch failed; retrying in 1 s")
                await asyncio.sleep(1)

    async def _dispatch_once(self) -> None:
        # Wait for at least one free slot, then claim as many due jobs as there are free slots.
        while self._free == 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        free = min(self._free, 512)
        self._wake.clear()
        # A function gets at most as many async invocations at once as it has capacity (max_instances ×
        # concurrency): more would only wait in its pool until they time out as throttled.
        full = [f for f, n in self._running.items() if n >= self._capacity(f)]
        claimed = await self.db.claim(time.time(), free, full)
        jobs, back = [], []
        for job in claimed:
            if self._running.get(job.function, 0) >= self._capacity(job.function):
                back.append(job.id)
            else:
                self._running[job.function] = self._running.get(job.function, 0) + 1
                jobs.append(job)
        if back:
            await self.db.unclaim(back)
        self._free -= len(jobs)
        for job in jobs:
            t = asyncio.create_task(self._run(job))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        if len(claimed) < free:
            due = await self.db.next_due()
            wait = 1.0 if due is None else min(max(due - time.time(), 0.0), 1.0)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _run(self, job: Job) -> None:
        try:
            await self._attempt(job)
        except Exception:
            log.exception("async queue: job %s failed unexpectedly; it will run again", job.id)
            with contextlib.suppress(Exception):
                await self.db.reschedule(job.id, time.time() + 5, None, uncount=True)
        finally:
            n = self._running.get(job.function, 1) - 1
            if n > 0:
                self._running[job.function] = n
            else:
                self._running.pop(job.function, None)
            self._free += 1
            self._slot_freed.set()
            self._wake.set()

    def _capacity(self, function: str) -> int:
        active = self.registry.get(function)
        if active is None:
            return 1 << 30  # unknown: let the job run (it goes to the dead-letter queue)
        spec = active.revision.spec
        return max(1, spec.max_instances * spec.concurrency)

    async def _attempt(self, job: Job) -> None:
        now = time.time()
        active = self.registry.get(job.function)
        if active is None:
            await self._dead(job, "function_not_found", {"code": "function_not_found",
                                                          "message": f"function {job.function!r} does not exist"})
            return
        spec = active.revision.spec
        if now - job.enqueued_at > spec.max_event_age:
            await self._dead(job, f"max_event_age exceeded ({spec.max_event_age:g} s)", job.last_error)
            return
        headers = [*job.headers, ("x-polyfn-idempotency-key", job.id), ("x-polyfn-attempt", str(job.attempt))]
        # the enqueuing request's W3C traceparent (kept with the job's headers): the invocation joins its trace
        tp = next((v for k, v in job.headers if k.lower() == "traceparent"), "")
        trace_id, parent_id = parse_traceparent(tp) if tp else ("", "")
        out = await self.invoker.invoke(job.function, job.kind, job.trigger, job.method, job.path, job.query,
                                        headers, job.body, job.content_type, trace_id=trace_id, parent_id=parent_id,
                                        activation_id=job.id)
        code, err = outcome_error(out) if out.status >= 400 else (None, {})
        cls = retry.classify(out.status, code)
        decision = retry.decide(cls, job.attempt, time.time() - job.enqueued_at, spec)
        if decision.action == "done":
            if job.trigger == "events" and out.status < 400 and self.on_reply is not None:
                await self._reply(job, out.body)
            # The activation record must be on disk before the job leaves the queue: a kill -9 in between
            # would otherwise lose the record of an invocation that ran (one flush covers every buffered one).
            await self.invoker.recorder.flush()
            await self.db.finish(job.id)
            await self._callback(job, out, "success" if out.status < 400 else "error")
        elif decision.action == "retry":
            err["attempt"] = job.attempt
            await self.db.reschedule(job.id, time.time() + decision.delay, err, uncount=cls in ("throttle", "shutdown"))
        else:
            err["attempt"] = job.attempt
            await self._dead(job, decision.reason, err, out)

    async def _reply(self, job: Job, body: bytes) -> None:
        """A function invoked by an event replied with a CloudEvent: route it on (hop count bounded)."""
        try:
            reply = json.loads(body) if body[:1] == b"{" else None
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
        await self.db.bury(job, reason, err, time.time())
        await self._callback(job, out, "dead_letter", reason)

    # -- callbacks ----------------------------------------------------------------------------------

    async def _callback(self, job: Job, out: Outcome | None, status: str, reason: str | None = None) -> None:
        if not job.callback_url:
            return
        fmt = CALLBACK_FORMATS.get(job.trigger)
        if fmt is not None:
            body, headers = fmt(job, out, status, reason)
            await self.db.add_callback(job.id, job.callback_url, body, time.time(), headers)
            self._cb_wake.set()
            return
        payload: dict[str, Any] = {"activation_id": job.id, "function": job.function, "status": status,
                                   "attempts": job.attempt}
        if out is not None:
            payload["status_code"] = out.status
            try:
                payload["result"] = json.loads(out.body) if out.body else None
            except ValueError:
                payload["result"] = out.body.decode("utf-8", "replace")
        if reason:
            payload["reason"] = reason
        await self.db.add_callback(job.id, job.callback_url, json.dumps(payload).encode(), time.time())
        self._cb_wake.set()

    async def _callback_loop(self) -> None:
        s = self.settings
        while not self._stopping:
            self._cb_wake.clear()
            rows = await self.db.pending_callbacks()
            now = time.time()
            next_at = None
            for row in rows:
                if row["not_before"] > now:
                    next_at = row["not_before"] if next_at is None else min(next_at, row["not_before"])
                    continue
                attempt = row["attempt"] + 1
                error = await self._post(row["url"], bytes(row["payload"]), row["id"], row["headers"])
                now = time.time()
                if error is None:
                    await self.db.update_callback(row["id"], "delivered", attempt, now, None, now)
                elif attempt >= s.callback_attempts:
                    log.warning("callback for %s to %s failed %d times: %s", row["id"], row["url"], attempt, error)
                    await self.db.update_callback(row["id"], "failed", attempt, now, error, now)
                else:
                    at = now + retry.backoff_delay(attempt, s.callback_backoff, 300.0)
                    await self.db.update_callback(row["id"], "pending", attempt, at, error, now)
                    next_at = at if next_at is None else min(next_at, at)
            wait = 5.0 if next_at is None else max(0.0, min(next_at - time.time(), 5.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cb_wake.wait(), wait)

    async def _post(self, url: str, payload: bytes, job_id: str, headers: str | None = None) -> str | None:
        assert self._http is not None
        hdrs = {"content-type": "application/json", "x-polyfn-activation-id": job_id}
        if headers:
            hdrs = {**json.loads(headers), "x-polyfn-activation-id": job_id}
        try:
            r = await self._http.post(url, content=payload, headers=hdrs)
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"
        if r.status_code >= 300:
            return f"HTTP {r.status_code}"
        return None

    # -- reading ------------------------------------------------------------------------------------

    async def lookup(self, job_id: str) -> dict[str, Any] | None:
        """Queue state of an activation id: the job (if still queued or dead) and its callback, if any."""
        job = await self.db.get(job_id)
        cb = await self.db.get_callback(job_id)
        if job is None and cb is None:
            return None
        out: dict[str, Any] = {}
        if job is not None:
            out["job"] = job
        if cb is not None:
            out["callback"] = cb
        return out
