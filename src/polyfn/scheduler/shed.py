"""When a call is refused (429) instead of waiting for an instance: load shedding, decided before the call
costs anything.

A bounded queue alone (`max_queue` callers) does not protect a node under a flood: with 2,000 connections
on a default function the queue stayed full, every accepted call waited seconds in it, and useful throughput
fell from 14.5k to a few hundred calls a second. Queueing helps while instances are starting (a burst waits
for them) or for a moment at full capacity (a short burst); it hurts when the queue *stands*: the function
runs all the instances it may, one caller waits per slot already, and the oldest waiter has been waiting
longer than `target`. Then new callers are refused at once, so the ones accepted are served promptly and
the instances are never idle for want of a queued call (CoDel's idea — a standing queue, not a long one,
is the sign of overload — applied at admission). A burst at full capacity may queue up to BURST callers
per slot before that (they all arrive before the oldest has waited long, e.g. in one turn of the event
loop under a flood, and would otherwise all be let in). While instances are starting, the oldest waiter's
wait is a cold start's, not a sign of overload, but the queue is bounded all the same, by BURST callers per
slot to come.

The HTTP protocol asks the pool the same question before a call costs a task (`Pool.admits`, counting the
calls it let in that have not reached the queue yet), and holds the 429s it answers itself in a tarpit
(gateway/http.py `Tarpit`).

Pure: the pool passes what it sees.
"""

from __future__ import annotations

QUEUE_FULL = "queue_full"  # `max_queue` callers wait already
OVERLOADED = "overloaded"  # a standing queue at full capacity
WAIT_TIMEOUT = "wait_timeout"  # a caller waited its whole timeout for an instance
NO_MEMORY = "no_memory"  # the node's memory budget has no room for an instance

#: how long the oldest waiter may have waited at full capacity before new callers are refused (seconds):
#: the `Retry-After` a refused caller is given — waiting longer in the queue is worse for it than being told
#: to come back. (10 ms, then 100 ms, refused the tail of a six-call burst to a two-instance function of
#: 0.3 s calls on a loaded machine.) A flood stays bounded by BURST callers per slot whatever this is.
WAIT_TARGET = 1.0
#: callers per slot that may queue at full capacity however short they have waited
BURST = 4
#: seconds a function that shed load stays checked by the HTTP protocol after its last refusal
RECOVER_AFTER = 5.0


def refusal(queued: int, slots: int, head_wait: float, saturated: bool, max_queue: int,
            target: float = WAIT_TARGET, starting: bool = False) -> str | None:
    """Why a new caller that found no free instance is refused, or None to let it wait.

    `queued`: callers waiting now; `slots`: calls the instances take at once (instances × concurrency,
    counting the ones starting); `head_wait`: seconds the oldest waiter has waited; `saturated`: no further
    instance may start (the function's `max_instances`); `starting`: some are still starting (then the
    oldest waiter's wait is a cold start's, not a sign of overload, but the queue is still bounded by BURST
    callers per slot to come: a flood that begins with a cold start must not fill `max_queue`)."""
    if queued >= max_queue:
        return QUEUE_FULL
    if saturated and queued >= slots and (queued >= BURST * slots or (head_wait > target and not starting)):
        return OVERLOADED
    return None
