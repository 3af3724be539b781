"""Where accepted async jobs wait and how this node takes them: the `Feed` interface of the dispatcher.

Two feeds implement it: the node's queue file (`filefeed.FileFeed`: jobs claimed from `queue.db` in batches,
or inserted already claimed when nothing waits ahead) and the cluster's NATS JetStream stream
(`streamfeed.StreamFeed`: one durable consumer per function, pulled while this node has room). The
dispatcher (`dispatcher.AsyncQueue`) owns holding, capacity, running, settling and completing; a feed owns
where jobs wait. It accepts new jobs, hands due ones to the dispatcher (`Holder`), and is told how each job it
handed out ended: completed or dead-lettered (`settled`), to run again later (`reschedule`), given back at a
stop (`give_back`). A held job travels with its feed, so every one of those goes to the feed the job came
from: a node on the cluster's stream still runs replayed dead letters from its file.

The queue file also keeps, whatever the feed, the dead letters, the completion records and the result
callbacks (`QueueDB`): those are the dispatcher's, not a feed's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from polyfn.queue.builtin import Job
    from polyfn.queue.capacity import Ledger


class Holder(Protocol):
    """What a feed may ask of the dispatcher: room, and holding and starting the jobs it takes."""

    ledger: Ledger[tuple[Job, Feed]]
    clock: Callable[[], float]  # epoch seconds (due times)

    @property
    def stopping(self) -> bool: ...

    def capacity(self, function: str) -> int:
        """How many of `function`'s jobs may invoke at once on this node."""

    def hold(self, function: str, size: int) -> None:
        """One more job of `function`, its payload `size` bytes, is held (counted before it is started)."""

    def release(self, function: str, size: int) -> None:
        """A held job (its payload `size` bytes) that was never started is let go."""

    def dispatch(self, job: Job, feed: Feed, reserved: bool = False) -> None:
        """Run a held job now if its function has capacity (`reserved`: its slot was taken with `ledger.reserve`),
        else let it wait for a free slot."""


class Feed(Protocol):
    """Where jobs wait until a node takes them. Raises `jetstream.QueueUnavailable` when it cannot take a job."""

    def start(self) -> None:
        """Begin handing due jobs to the holder (a background task)."""

    async def stop(self) -> None:
        """Hand out no more jobs."""

    async def close(self) -> None:
        """After the dispatcher's last completion: release what the feed still holds open."""

    async def accept(self, job: Job, dedupe: bool = True) -> None:
        """Durably queue a new job (returns once it is stored); the feed may start it at once. Not `dedupe`: its
        id was made by the node for this job (no caller can send it again), so nothing need detect a second."""

    def room_freed(self) -> None:
        """The dispatcher has room again (a job was settled)."""

    def ran(self, job: Job, seconds: float) -> None:
        """An attempt of a held job ended (or never started) after `seconds`."""

    def started(self, job: Job) -> None:
        """An attempt of a held job starts: counted (`job.attempt` + 1) and, where the feed keeps it, recorded."""

    async def settled(self, jobs: Sequence[Job]) -> None:
        """These held jobs are done here (completed, or dead-lettered into the queue file): they leave the feed."""

    async def reschedule(self, job: Job, at: float, err: dict[str, Any] | None, uncount: bool) -> None:
        """A held job runs again at `at` (its attempt not counted when `uncount`)."""

    def lost(self, job: Job) -> None:
        """A held job could not be settled (its `reschedule` failed): the feed lets it come back on its own."""

    async def give_back(self, jobs: Sequence[Job]) -> None:
        """Held jobs that never started (the node stops): another node, or the next start, takes them."""

    async def cancel(self, job_id: str, now: float) -> Job | str | None:
        """A waiting job that will not run: dead-lettered as `cancelled` (`state == "dead"`: the queue file does
        both in one statement) or taken out of the feed for the dispatcher to dead-letter (the cluster's
        stream); "running" or "pending" when another node had just taken it and cancelled it there (its dead
        letter, its callback); None when it is not waiting here."""

    async def deleted(self, function: str) -> list[Job]:
        """The function was deleted: its waiting jobs this feed can still take, now held (to be dead-lettered)."""

    async def get(self, job_id: str) -> Job | None:
        """The job with this id if the feed has it."""

    async def counts(self) -> dict[str, int]:
        """Jobs by state (pending, running, …)."""

    async def backlog(self) -> tuple[dict[str, int], dict[str, int]]:
        """(jobs queued or running, dead letters) per function."""

    async def topic_publish_many(self, topic: str, subscribers: list[str],
                                 msgs: list[tuple[str, bytes, dict[str, str], float]]) -> None:
        """A copy of each embedded-topic message for every subscribing trigger."""

    async def topic_drop(self, subscriber: str) -> None:
        """A deleted trigger's topic messages go."""
