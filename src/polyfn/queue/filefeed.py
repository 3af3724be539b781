"""The queue file as a feed (`feed.Feed`): jobs wait as `pending` rows of `queue.db` and are claimed in batches.

When nothing of its function waits ahead and the node has room, an accepted job is inserted already claimed
(`running`) and started right after its commit: no claim transaction in the steady state.

A held job's attempt counts when its invocation starts (`started`), not when it is claimed. In the file: in the
insert when a slot was free for it (it starts right after the commit); else, for an attempt still running
COUNT_AFTER seconds after its start, with a group commit then (one merged statement for all of them); an attempt
that ended sooner is counted by how it is settled (a retry or a dead letter writes the count; a success deletes
the row). So a `kill -9` spends no attempt of a job waiting in memory, and misses the count of one that had
started less than about COUNT_AFTER before (it runs again: at least once, as always).
Otherwise it is marked *behind*: the claim loop takes due jobs of the functions marked behind (all of them
after a start, a replay or a due retry) as far as the dispatcher has room, oldest first per function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from polyfn.queue.builtin import Job, QueueDB
from polyfn.queue.feed import Holder

log = logging.getLogger("polyfn.queue")

#: Seconds after its start at which an attempt still running is counted in the file (`FileFeed.started`): most
#: jobs of a busy node end sooner, and their count needs no statement of its own.
COUNT_AFTER = 0.01


class FileFeed:
    def __init__(self, db: QueueDB, holder: Holder, clock: Callable[[], float]):
        self.db = db
        self.holder = holder
        self.clock = clock
        self.task: asyncio.Task[None] | None = None  # the claim loop
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # (set by `start`)
        self._wake = asyncio.Event()
        # Functions that may have due pending jobs in the file (new jobs of theirs queue behind them), all
        # of them at start; and the same marks made while a claim runs (its view of the file may miss them).
        self._behind: set[str] = set()
        self._behind_all = True
        self._marked: set[str] = set()
        self._marked_all = False
        self._claiming = False
        self._next_due: float | None = None  # earliest retry not yet due
        # jobs inserted with their first attempt counted (a slot was free: they start right after the commit)
        self._counted: set[str] = set()
        self._running: dict[str, None] = {}  # jobs whose attempt started and is not counted in the file yet
        self._count_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.task = self._loop.create_task(self._claims())

    async def stop(self) -> None:
        if self._count_timer is not None:  # (a stop lets running jobs finish: counted now, as if COUNT_AFTER passed)
            self._count_timer.cancel()
            self._count_running()
        self._wake.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def close(self) -> None:
        pass  # the file is the dispatcher's (dead letters, callbacks): it closes it

    def poke(self) -> None:
        """Jobs became due outside `accept` (e.g. a dead letter replayed): claim now."""
        self._mark_behind(None)
        self._wake.set()

    def _mark_behind(self, function: str | None) -> None:
        """`function` (None: any) may have due pending jobs in the file."""
        if function is None:
            self._behind_all = self._marked_all = True
        else:
            self._behind.add(function)
            self._marked.add(function)

    def room_freed(self) -> None:
        # Only when a claim could take something: woken at every finished job for nothing (the usual case on the
        # cluster's stream, or with no backlog), the loop cost a wait_for task each time; and behind a backlog only
        # once a function behind has room for a batch (`_refills`: the loop's own test), not at every finished job.
        if self._behind_all or self._next_due is not None or (self._behind and self._refills()):
            self._wake.set()

    def _refills(self) -> list[str]:
        """The functions behind that a claim would take jobs of now (`_refill_due`)."""
        return [f for f in self._behind if self._refill_due(f)]

    def _refill_due(self, function: str) -> bool:
        """A claim would take jobs of `function` now: room for half its prefetch (claims come in batches), or for
        what the node has left. (With less room, at least that many of its jobs wait in memory ahead of the file's:
        the releases as they run wake the loop in time.)"""
        return self.holder.ledger.refill_due(function)

    def ran(self, job: Job, seconds: float) -> None:
        self._running.pop(job.id, None)  # (ended: its settling writes the count if the row stays)

    def started(self, job: Job) -> None:
        job.attempt += 1
        if self._counted and job.id in self._counted:
            self._counted.discard(job.id)  # counted in the file at its insert
            return
        self._running[job.id] = None
        if self._count_timer is None:
            self._count_timer = (self._loop or asyncio.get_running_loop()).call_later(COUNT_AFTER, self._count_running)

    def _count_running(self) -> None:
        """The attempts still running COUNT_AFTER after the first of them started: counted in the file."""
        self._count_timer = None
        if self._running:
            ids, self._running = list(self._running), {}
            self.db.started(ids)

    # -- accepting ----------------------------------------------------------------------------------

    async def accept(self, job: Job, dedupe: bool = True) -> None:
        function, h = job.function, self.holder  # (a second job with the same id fails its insert: no `dedupe`)
        size = len(job.body)
        direct = (not self._behind_all and function not in self._behind and not self._claiming
                  and not h.stopping and h.ledger.takes(function))
        # With a slot free too, its invocation starts right after the commit: its first attempt is counted in the
        # insert (no statement at its start) and the slot is taken now.
        counted = direct and h.ledger.reserve(function)
        if direct:  # claimed at insert: it starts as soon as it is committed (or waits for a slot in memory)
            job.state = "running"
            h.hold(function, size)
        try:
            await self.db.enqueue([job], starting=counted)
        except BaseException:
            if direct:
                self._unheld(job, counted)
            raise
        if not direct:
            self._mark_behind(function)
            if self._refill_due(function):  # otherwise a finished job wakes the claim loop once it is (`room_freed`)
                self._wake.set()
        elif h.stopping:  # the node began to stop during the commit: the job runs at the next start
            self._unheld(job, counted)
            with contextlib.suppress(Exception):
                await self.db.reschedule(job.id, job.not_before, None, job.attempt)  # pending, nothing counted
        elif counted:
            self._counted.add(job.id)
            h.dispatch(job, self, reserved=True)
        else:
            h.dispatch(job, self)

    def _unheld(self, job: Job, counted: bool) -> None:
        """A job held at its insert is not run here after all."""
        self.holder.release(job.function, len(job.body))
        if counted:  # its slot is not used after all: to the jobs waiting for one, if any came meanwhile
            for waiting, feed in self.holder.ledger.invoked(job.function, self.holder.stopping):
                self.holder.dispatch(waiting, feed, reserved=True)

    # -- claiming -----------------------------------------------------------------------------------

    async def _claims(self) -> None:
        while not self.holder.stopping:
            try:
                await self._claim_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("async queue: dispatch failed; retrying in 1 s")
                self._claiming = False
                await asyncio.sleep(1)

    async def _claim_once(self) -> None:
        self._wake.clear()
        now = self.clock()
        ledger = self.holder.ledger
        free = ledger.free()
        due = self._next_due is not None and self._next_due <= now
        if self._behind_all or due:
            names: list[str] | None = None  # every function with pending jobs
        else:
            # Refill a function's prefetch when half of it is free, not at every finished job: claims
            # then come in batches.
            names = self._refills()
        if free > 0 and (names is None or names):
            self._marked.clear()
            self._marked_all = False
            self._claiming = True
            try:
                got = await self.db.claim_ready(now, free, names, ledger.room, ledger.spare())
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
                self.holder.hold(job.function, len(job.body))
                self.holder.dispatch(job, self)
            free = ledger.free()
        # Wait for a change: a job released (room for a claim), a job queued, or the next retry's due time.
        wait = 1.0
        if free > 0 and self._next_due is not None:
            wait = min(max(self._next_due - self.clock(), 0.001), 1.0)
        if self._wake.is_set():
            return
        # (a timer that sets the event, not `wait_for`: that made a task and a future every time)
        timer = self._loop.call_later(wait, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    # -- settling -----------------------------------------------------------------------------------

    async def settled(self, jobs: Sequence[Job]) -> None:
        # the completion batch deleted them (`finish_many`), or `bury` made them dead letters
        for job in jobs:
            self._running.pop(job.id, None)  # (settled: a later count of its start would land on its dead letter)
            self._counted.discard(job.id)  # (one dead-lettered before its start: function gone, too old)

    async def reschedule(self, job: Job, at: float, err: dict[str, Any] | None, uncount: bool) -> None:
        self._counted.discard(job.id)  # (one that failed before its start: the count is written here)
        self._running.pop(job.id, None)  # (the count written here is the whole one: not counted again later)
        await self.db.reschedule(job.id, at, err, job.attempt - 1 if uncount else job.attempt)
        self._retry_at(job.function, at)

    def lost(self, job: Job) -> None:
        self._retry_at(job.function, self.clock() + 5)

    def _retry_at(self, function: str, at: float) -> None:
        self._mark_behind(function)  # due at once (a shutdown retry) or soon
        if self._next_due is None or at < self._next_due:
            self._next_due = at
            self._wake.set()

    async def give_back(self, jobs: Sequence[Job]) -> None:
        with contextlib.suppress(Exception):  # else `running` in the file: they run again at the next start
            await self.db.unclaim([j.id for j in jobs])

    async def cancel(self, job_id: str, now: float) -> Job | None:
        return await self.db.cancel_pending(job_id, now)

    async def deleted(self, function: str) -> list[Job]:
        return []  # its rows are dead-lettered as `function_not_found` when they come up

    # -- reading ------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return await self.db.get(job_id)

    async def counts(self) -> dict[str, int]:
        return await self.db.counts()

    async def backlog(self) -> tuple[dict[str, int], dict[str, int]]:
        return await self.db.counts_by_function()

    # -- embedded topics ----------------------------------------------------------------------------

    async def topic_publish_many(self, topic: str, subscribers: list[str],
                                 msgs: list[tuple[str, bytes, dict[str, str], float]]) -> None:
        await self.db.topic_publish_many(topic, subscribers, msgs)

    async def topic_drop(self, subscriber: str) -> None:
        await self.db.topic_drop_subscriber(subscriber)
