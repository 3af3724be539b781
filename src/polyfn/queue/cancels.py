"""Cancelling async jobs that have not started (the queue is dispatcher.py): held here waiting for an instance,
or waiting in a feed, or — on the cluster's stream — held by another node (asked over NATS); and a deleted
function's jobs in a shared feed dead-lettered at once. `Cancels` is that part of `AsyncQueue` (a base class)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from polyfn.queue.builtin import CANCELLED, QueueDB
from polyfn.queue.callbacks import Callbacks
from polyfn.queue.capacity import Ledger
from polyfn.queue.feed import Feed
from polyfn.queue.jetstream import JetStreamJobs

if TYPE_CHECKING:
    from polyfn.invoker import Invoker
    from polyfn.queue.builtin import Job

log = logging.getLogger("polyfn.queue")


class Cancels:
    """Works on the queue's ledger, feeds, queue file and callbacks."""

    invoker: Invoker
    clock: Callable[[], float]
    db: QueueDB
    feeds: list[Feed]
    jobs: JetStreamJobs | None
    ledger: Ledger[tuple[Job, Feed]]
    callbacks: Callbacks

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
            try:  # (it never ran: no attempt of its was counted here)
                await self.db.bury(job, "cancelled", dict(CANCELLED), now)
                await feed.settled([job])
            except BaseException:
                self.dispatch(job, feed)  # back in its line
                raise
            self.release(job.function, len(job.body))
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
