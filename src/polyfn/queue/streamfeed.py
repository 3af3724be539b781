"""The cluster's NATS JetStream stream as a feed (`feed.Feed`): with `queue_url` set, accepted jobs wait there.

Every function this node serves has a feeder that pulls its jobs from the function's durable consumer while the
node has room for them: the function's capacity here plus a prefetch sized by how long its jobs take
(`prefetch`). A held job's message is acknowledged once the job is settled here (after the completion
batch's activation flush, or after a retry's re-publish, or the dead-lettering); until then a heartbeat
(`jetstream.keep_held`) keeps it from going to another node. The stream itself: queue/jetstream.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from polyfn.loops import one_item
from polyfn.queue.builtin import Job
from polyfn.queue.capacity import PREFETCH
from polyfn.queue.feed import Holder
from polyfn.queue.jetstream import JetStreamJobs, keep_held

if TYPE_CHECKING:
    from polyfn.scheduler.registry import FunctionRegistry

log = logging.getLogger("polyfn.queue")

#: Seconds of work (by the function's average job time) a node holds beyond its capacity from the cluster's
#: stream: enough that pulls come in batches, short enough that other nodes are not kept waiting.
STREAM_PREFETCH_S = 0.05


class StreamFeed:
    def __init__(self, jobs: JetStreamJobs, holder: Holder, registry: FunctionRegistry):
        self.jobs = jobs
        self.holder = holder
        self.registry = registry
        self._msgs: dict[str, tuple[Job, Any]] = {}  # the jobs held from the stream with their messages, by id
        self._room_wake = asyncio.Event()  # room for more held jobs
        self._took: dict[str, float] = {}  # function → moving average of its jobs' run time (s)
        self._task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.jobs.open()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())
        self._beat_task = asyncio.create_task(keep_held(self._held_messages, self.jobs.ack_wait / 3))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def close(self) -> None:
        """Jobs still running go to another node once their ack wait is over."""
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        await self.jobs.close()

    def room_freed(self) -> None:
        self._room_wake.set()

    def ran(self, job: Job, seconds: float) -> None:
        """How long this function's jobs take (sizes the prefetch)."""
        function = job.function
        avg = self._took.get(function)
        self._took[function] = seconds if avg is None else avg + (seconds - avg) / 8

    def started(self, job: Job) -> None:
        """Counted in memory only: a message's job carries the attempts that ended here (a retry re-publishes it with its
        count); a node killed while holding it leaves it as it was published, so its next delivery counts from there
        — nothing spent for the jobs it held unstarted, and the attempt it was running is not counted either (the
        stream's redelivery count cannot tell them apart: it also counts hand-backs and early retries' naks)."""
        job.attempt += 1

    async def accept(self, job: Job, dedupe: bool = True) -> None:
        await self.jobs.publish(job, first=True, dedupe=dedupe)  # whichever node has room pulls it

    # -- pulling ------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Keep one feeder per function this node serves (functions come and go with deploys and deletes)."""
        feeders: dict[str, asyncio.Task[None]] = {}
        try:
            while not self.holder.stopping:
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

    def prefetch(self, function: str, cap: int) -> int:
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
        prefetch sized by how long its jobs take (`prefetch`)."""
        h = self.holder
        ledger = h.ledger
        while not h.stopping and self.registry.get(function) is not None:
            cap = h.capacity(function)
            limit = cap + self.prefetch(function, cap)
            held = ledger.held.get(function, 0)
            room = min(limit - held, ledger.free())
            spare = ledger.spare()
            # While every instance is busy, refill once half the prefetch is free, not after every job: a
            # pull per job (a request to NATS and its reply) would cost the node and NATS more than the job.
            # The same for the payloads' bytes (`Ledger.refill_due`: half the budget free).
            if room <= 0 or (held >= cap and room < (limit - cap) // 2) or ledger.nbytes > ledger.max_bytes // 2:
                await self._wait_room()
                continue
            try:  # as many as fit in the bytes left; when not even the next one does, that one alone (it passes)
                got = await self.jobs.fetch(function, min(room, PREFETCH), timeout=5.0, max_bytes=spare)
                if not got and self.jobs.over_bytes(function):
                    got = await self.jobs.fetch(function, 1, timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("async queue: pulling %s's jobs from the stream failed (%s); retrying in 1 s",
                            function, e)
                await asyncio.sleep(1)
                continue
            now = h.clock()
            for job, msg in got:
                with one_item(log, "async queue: taking job %s from the stream", job.id):
                    await self._take(job, msg, now)

    async def _wait_room(self) -> None:
        self._room_wake.clear()
        await self._room_wake.wait()

    async def _take(self, job: Job, msg: Any, now: float) -> None:
        """Hold a job pulled from the stream and start it, or hand it back to the stream."""
        if job.not_before > now + 0.001:  # a retry not yet due: back to the stream until then
            with contextlib.suppress(Exception):
                await msg.nak(delay=job.not_before - now)
            return
        if job.id in self._msgs or self.holder.stopping:
            # held here already (a redelivery, or a duplicate left by a crash between a retry's publish
            # and its acknowledgement): it comes back when the one held is settled, if it still exists
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.jobs.ack_wait)
            return
        job.state = "running"  # (its attempt counts when it starts: `started`)
        self._msgs[job.id] = (job, msg)
        self.holder.hold(job.function, len(job.body))
        self.holder.dispatch(job, self)

    def _held_messages(self) -> list[Any]:
        return [*(msg for _, msg in self._msgs.values()), *self.jobs.arrived()]

    # -- settling -----------------------------------------------------------------------------------

    async def _ack(self, job_id: str) -> None:
        """A streamed job is settled here (completed, rescheduled or dead-lettered): it leaves the stream."""
        _, msg = self._msgs.pop(job_id, (None, None))
        if msg is not None:
            try:  # not ack_sync: a round trip per job would cap the rate; a lost ack means one more run
                await msg.ack()
            except Exception as e:  # it will run again somewhere after ack_wait (at least once)
                log.warning("async queue: acknowledging %s failed: %s", job_id, e)

    async def settled(self, jobs: Sequence[Job]) -> None:
        msgs = [m for m in (self._msgs.pop(job.id, (None, None))[1] for job in jobs) if m is not None]
        if msgs:
            try:  # (one write for the batch; a lost ack means one more run, as in `_ack`)
                await self.jobs.ack_many(msgs)
            except Exception as e:
                log.warning("async queue: acknowledging %d jobs failed: %s", len(msgs), e)

    async def reschedule(self, job: Job, at: float, err: dict[str, Any] | None, uncount: bool) -> None:
        again = msgspec.structs.replace(job, state="pending", not_before=at, last_error=err,
                                        attempt=job.attempt - 1 if uncount else job.attempt)
        await self.jobs.publish(again)  # first the new attempt, then the old one goes: never neither
        await self._ack(job.id)

    def lost(self, job: Job) -> None:
        # NATS away: no more heartbeats, so JetStream gives it to a node again once its ack wait is over
        self._msgs.pop(job.id, None)

    async def give_back(self, jobs: Sequence[Job]) -> None:
        for job in jobs:  # not started: another node takes them now
            _, msg = self._msgs.pop(job.id, (None, None))
            if msg is not None:
                with contextlib.suppress(Exception):
                    await msg.nak()

    async def cancel(self, job_id: str, now: float) -> Job | str | None:
        """A job waiting in the stream, taken out of it (`JetStreamJobs.take_waiting`) for the dispatcher to
        dead-letter; None when a node holds it (this one: running or waiting for an instance)."""
        if job_id in self._msgs:
            return None
        try:
            return await self.jobs.take_waiting(job_id, now)
        except Exception as e:
            log.warning("async queue: cancelling %s in the stream failed: %s", job_id, e)
            return None

    async def deleted(self, function: str) -> list[Job]:
        """Its jobs in the stream go to the dead-letter queue, as the queue file's do when they come up
        (`function_not_found`), instead of waiting for a node that serves the name. Jobs other nodes hold are
        dead-lettered there when they find it gone. (Its consumer stays: the jobs other nodes hold are
        acknowledged through it when they settle.)"""
        out = []
        for job, msg in await self.jobs.take_all(function):
            if job.id in self._msgs:  # held here (a redelivery): settled by the run that holds it
                continue
            self._msgs[job.id] = (job, msg)
            out.append(job)
        return out

    # -- reading ------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """Held here (running), else waiting in the stream (or held by another node)."""
        held = self._msgs.get(job_id)
        return held[0] if held is not None else await self.jobs.get(job_id)

    async def counts(self) -> dict[str, int]:
        """Jobs waiting for a node (pending) and held by some node (running), across the cluster."""
        try:
            waiting, held = await self.jobs.counts()
        except Exception as e:
            log.warning("async queue: counting the stream's jobs failed: %s", e)
            return {}
        return {"pending": waiting, "running": held}

    async def backlog(self) -> tuple[dict[str, int], dict[str, int]]:
        try:
            return dict(await self.jobs.by_function()), {}
        except Exception as e:
            log.warning("async queue: counting the stream's jobs failed: %s", e)
            return {}, {}

    # -- embedded topics ----------------------------------------------------------------------------

    async def topic_publish_many(self, topic: str, subscribers: list[str],
                                 msgs: list[tuple[str, bytes, dict[str, str], float]]) -> None:
        """Any node's runner of the trigger takes them (`TopicRunner._run_stream`)."""
        await self.jobs.topic_publish_many(subscribers, msgs)

    async def topic_drop(self, subscriber: str) -> None:
        await self.jobs.topic_drop(subscriber)
