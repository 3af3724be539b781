"""Result callbacks of async jobs: the body a job's `X-Callback-Url` receives, and the loop that POSTs them.

Callbacks are rows in the queue file (queued in the same commit that completes or dead-letters the job), so a
node that stops or crashes delivers them after its next start. Each is settled whatever happens: delivered,
retried with backoff (`callback_attempts`, `callback_backoff`), or failed; a URL the node may never POST to
fails at once. The body is polyfn's JSON result, or a vendor's shape registered in `CALLBACK_FORMATS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polyfn import jsontext
from polyfn.auth.callbacks import INVALID, InvalidCallbackUrl, parse_callback_url
from polyfn.loops import cancelled, one_item
from polyfn.queue import retry
from polyfn.queue.builtin import Job
from polyfn.queue.callback_shapes import SHAPES

if TYPE_CHECKING:
    import httpx

    from polyfn.config import Settings
    from polyfn.invoker import Outcome
    from polyfn.queue.builtin import QueueDB

log = logging.getLogger("polyfn.queue")

#: trigger name → callback shape (queue/callback_shapes.py): filled at import, so jobs recovered after a
#: restart get their vendor's shape even before the node's HTTP API (built in the background) exists.
CALLBACK_FORMATS: dict[str, Any] = dict(SHAPES)


class Callbacks:
    """`start(db)` runs the delivery loop on the queue file; `add` queues one; `wake` after a batch queued some."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.db: QueueDB = None  # type: ignore[assignment]
        self._http: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self, db: QueueDB) -> None:
        self.db = db
        self._task = asyncio.create_task(self._loop())

    def wake(self) -> None:
        self._wake.set()

    async def stop_loop(self) -> None:
        """No more deliveries (those due stay in the queue file for the next start)."""
        self._stopping = True
        self._wake.set()
        await cancelled(self._task)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def add(self, job: Job, out: Outcome | None, status: str, reason: str | None = None) -> None:
        """Queue the callback of a settled job (dead-lettered here; completed ones go in `finish_many`'s batch)."""
        if not job.callback_url:
            return
        body, headers = self.payload(job, out, status, reason)
        await self.db.add_callback(job.id, job.callback_url, body, self.clock(), headers)
        self._wake.set()

    @staticmethod
    def payload(job: Job, out: Outcome | None, status: str,
                          reason: str | None = None) -> tuple[bytes, dict[str, str] | None]:
        """The callback's body and headers (None: polyfn's JSON result), in the trigger's vendor shape if one
        is registered in `CALLBACK_FORMATS`. A vendor shape that fails on this job (a bug) gives polyfn's
        shape instead, logged: one job's callback must never hold up the completion of the others."""
        fmt = CALLBACK_FORMATS.get(job.trigger)
        if fmt is not None:
            with one_item(log, "async queue: the %s callback shape of %s", job.trigger, job.id):
                return fmt(job, out, status, reason)  # type: ignore[no-any-return]
        payload: dict[str, Any] = {"activation_id": job.id, "function": job.function, "status": status,
                                   "attempts": job.attempt}
        if out is not None:
            payload["status_code"] = out.status
            try:
                payload["result"] = jsontext.loads(out.body) if out.body else None
            except ValueError:
                payload["result"] = out.body.decode("utf-8", "replace")
        if reason:
            payload["reason"] = reason
        try:
            return jsontext.dumps(payload).encode(), None
        except jsontext.TooDeep:  # (parsed, but too deep to encode again: the result as text)
            payload["result"] = out.body.decode("utf-8", "replace") if out is not None else None
            return json.dumps(payload).encode(), None

    async def _loop(self) -> None:
        """POST due callbacks. Each one is settled whatever happens: delivered, retried later with backoff,
        or failed (attempts used up, or a URL the node can never POST to, e.g. one queued before URLs were
        checked at the edge). An error in one (a bug, the queue file) is logged, and the loop goes on."""
        while not self._stopping:
            self._wake.clear()
            next_at: float | None = None
            with one_item(log, "async queue: reading the pending callbacks") as guard:
                rows = await self.db.pending_callbacks()
                now = self.clock()
                for row in rows:
                    if self._stopping:
                        break
                    if row["not_before"] > now:
                        next_at = row["not_before"] if next_at is None else min(next_at, row["not_before"])
                        continue
                    with one_item(log, "async queue: the callback of %s", row["id"]):
                        at = await self._deliver(row)
                        if at is not None:
                            next_at = at if next_at is None else min(next_at, at)
                    now = self.clock()
            wait = 5.0 if next_at is None else max(0.0, min(next_at - self.clock(), 5.0))
            if guard.failed:  # again in a second, not at once: a failure that repeats must not spin
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _deliver(self, row: Any) -> float | None:
        """One attempt at a due callback; returns when it is due again (None: settled)."""
        s = self.settings
        attempt = row["attempt"] + 1
        try:
            parse_callback_url(row["url"])
        except InvalidCallbackUrl as e:  # can never be delivered: settled at once
            log.warning("callback for %s can never be delivered: %s", row["id"], e)
            now = self.clock()
            await self.db.update_callback(row["id"], "failed", attempt, now, f"{INVALID}: {e}", now)
            return None
        try:
            error = await self._post(row["url"], bytes(row["payload"]), row["id"], row["headers"])
        except Exception as e:  # not the receiver's answer: a bug of ours with this row; tried again later
            log.exception("callback for %s to %s: unexpected error", row["id"], row["url"])
            error = f"internal error: {type(e).__name__}: {e}"
        now = self.clock()
        if error is None:
            await self.db.update_callback(row["id"], "delivered", attempt, now, None, now)
            return None
        if attempt >= s.callback_attempts:
            log.warning("callback for %s to %s failed %d times: %s", row["id"], row["url"], attempt, error)
            await self.db.update_callback(row["id"], "failed", attempt, now, error, now)
            return None
        at = now + retry.backoff_delay(attempt, s.callback_backoff, 300.0)
        await self.db.update_callback(row["id"], "pending", attempt, at, error, now)
        return at

    async def _post(self, url: str, payload: bytes, job_id: str, headers: str | None = None) -> str | None:
        import httpx  # (on first use: httpx and the CLI it imports cost ~10 % of the server's start)

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.callback_timeout)
        hdrs = {"content-type": "application/json", "x-polyfn-activation-id": job_id}
        if headers:
            hdrs = {**json.loads(headers), "x-polyfn-activation-id": job_id}
        try:
            r = await self._http.post(url, content=payload, headers=hdrs)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            return f"{type(e).__name__}: {e}"
        if r.status_code >= 300:
            return f"HTTP {r.status_code}"
        return None
