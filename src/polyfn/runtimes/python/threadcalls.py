"""Sync handlers with concurrency > 1: each call runs whole in a thread of the instance, without a task.

`_serve_async` (instance.py) used to give such a call a task that awaited `run_in_executor`: per call a task,
an executor work item and its `concurrent.futures.Future`, an asyncio future chained to it, and a wake-up of the
loop (`call_soon_threadsafe`) to hand the value back, then the response built on the loop. Here the loop puts
the calls a read brings on a queue (`submit`) and wakes one of the instance's own threads (`kick`); the thread
runs the handler, builds the response and the `Result` (its lines added on the loop); the results come back
through one deque, with one wake-up of the loop per batch (they leave with the turn's other results).

Threads are woken as a relay, not one per call: a thread that takes a call while more are queued first wakes
one spare, which takes the next call as soon as it holds the GIL -- when the first call waits (I/O, a sleep, a
lock: the GIL is released) or has run for the interpreter's switch interval. So no call waits behind another
that blocks (calls run at once, up to `concurrency` threads, started as needed), as when each had a thread of
its own; but a batch of quick calls runs in one thread, one after the other, with two wake-ups in all (the
taker and its spare, which finds nothing left and sleeps) instead of one wake-up and a GIL hand-over per call.

What a call sees is what it saw in the executor: its own copy of the loop's context with its log buffer as
`current_buffer`, the trace variables set on the loop before it starts, its lines streamed by the loop's
`LoopStreams` (whose streamer sends only from the loop's thread). A handler that returns a streamed response
hands it back to the loop, where a task (in `running`: a server's `Cancel` finds it, as before) writes it with
`stream_async`, whose sync generator steps run in the executor as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from queue import SimpleQueue
from typing import Any

from polyfn.protocol import Invoke, Result
from polyfn.runtimes.python.capture import LogBuffer, LoopStreams, current_buffer
from polyfn.runtimes.python.flavors import Adapter
from polyfn.runtimes.python.flavors.base import stream_parts


class ThreadCalls:
    """The calls of a sync handler with concurrency > 1 (see the module's docstring). `submit` and the
    results' delivery run on the loop; `_work` in the instance's threads."""

    def __init__(self, adapter: Adapter, spec: Any, streams: LoopStreams, deliver: Any, stream: Any):
        self.adapter = adapter
        self.spec = spec
        self.streams = streams
        self.deliver = deliver  # (Result) -> None, on the loop: the result joins the turn's batch
        self.stream = stream  # (inv, buf, t0, parts, finish, context) -> None, on the loop: a streamed response's task
        self.loop = asyncio.get_running_loop()
        self.pending: deque[tuple[Invoke, LogBuffer, contextvars.Context, float]] = deque()  # calls not yet taken
        self.wake: SimpleQueue[None] = SimpleQueue()  # one token per thread woken
        self.lock = threading.Lock()  # over `looking` and `idle`, and the look at `pending` that changes them
        self.looking = 0  # threads woken or between calls: each takes the next pending call, or sleeps
        self.idle = 0  # threads asleep in `wake.get()`
        self.threads = 0
        self.done: deque[tuple[Result, LogBuffer]] = deque()
        self.woken = False  # a `_drain` is scheduled on the loop
        self.inflight = 0  # calls submitted and not yet delivered (on the loop)

    def submit(self, inv: Invoke) -> None:
        """Queue one call (on the loop, in the read's turn; `kick` at the read's end)."""
        spec = self.spec
        buf = LogBuffer(spec.log_line_max, spec.log_lines_max, spec.log_bytes_max)
        self.streams.start(buf, inv)
        self.inflight += 1
        self.pending.append((inv, buf, contextvars.copy_context(), time.perf_counter()))

    def kick(self) -> None:
        """After a read's calls are queued: wake a thread for them, unless one is looking already."""
        with self.lock:
            if self.pending and not self.looking:
                self._wake()

    def _wake(self) -> None:
        """One more thread looking (with the lock held): an idle one, or a new one."""
        self.looking += 1
        if self.idle:
            self.idle -= 1
        elif self.threads < self.spec.concurrency:
            self.threads += 1
            threading.Thread(target=self._work, name=f"fn_{self.threads}", daemon=True).start()
        self.wake.put(None)

    def _work(self) -> None:
        sleep, pending, lock, run = self.wake.get, self.pending, self.lock, self._run
        while True:
            sleep()
            while True:
                with lock:
                    if not pending:
                        self.looking -= 1
                        self.idle += 1
                        break
                    inv, buf, ctx, t0 = pending.popleft()
                    self.looking -= 1
                    if pending and not self.looking:  # a spare takes the next call should this one wait
                        self._wake()
                try:
                    ctx.run(run, inv, buf, ctx, t0)
                except BaseException as exc:  # (what a task would have reported: the thread goes on)
                    self.loop.call_soon_threadsafe(self.loop.call_exception_handler,
                                                   {"message": "an invocation failed", "exception": exc})
                with lock:
                    self.looking += 1

    def _run(self, inv: Invoke, buf: LogBuffer, ctx: contextvars.Context, t0: float) -> None:
        """One call, in a thread, inside its own context (`ctx`)."""
        adapter = self.adapter
        current_buffer.set(buf)
        try:
            value = adapter.handler(*adapter.args(inv))
            parts = stream_parts(value)
            if parts is not None:  # a streamed response: written from the loop, in a copy of the call's context
                # (its thread may not have left `ctx.run` yet, and a task stepping in a context another thread is
                # in fails, "already entered", and never runs)
                self.loop.call_soon_threadsafe(self.stream, inv, buf, t0, parts, self._finish, ctx.copy())
                return
            status, headers, body = adapter.respond(inv, value)
            error = None
        except Exception as exc:
            status, headers, body, error = adapter.fail(inv, exc)
        self._done(Result(inv.id, status, headers, body, error, [], (time.perf_counter() - t0) * 1000), buf)

    def _done(self, result: Result, buf: LogBuffer) -> None:
        self.done.append((result, buf))
        if not self.woken:
            self.woken = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self.woken = False  # (before taking: a result appended after this is either taken below or wakes us again)
        done, finish = self.done, self._finish
        while done:
            finish(*done.popleft())

    def _finish(self, result: Result, buf: LogBuffer) -> None:
        """A call's result, on the loop (from `_drain`, or a streamed response's task)."""
        self.inflight -= 1
        self.streams.stop(result.id)  # (then its lines, on the loop: never while the loop's streamer sends some)
        result.logs = buf.drain()
        self.deliver(result)
