"""The server's handle on one instance process: its connection, state and in-flight invocations.

The connection is an asyncio `Protocol` on our end of a socketpair; frames are split with
`protocol.FrameReader`. Everything the instance sends is checked: an oversized or undecodable frame, or a
result for an invocation we never sent, kills the instance (it is treated as hostile or broken).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec

from polyfn.protocol import (
    Cancel,
    Chunk,
    Fault,
    FrameError,
    FrameReader,
    Head,
    InitError,
    Invoke,
    LogLine,
    Logs,
    Ready,
    Result,
    encode,
    encode_chunk,
    from_instance_decoder,
)
from polyfn.streaming import GONE, ResponseStream

log = logging.getLogger("polyfn.instance")

DRAIN_S = 5.0  # a killed instance with calls behind the one it ran: its connection is closed by then at the latest


class State(enum.Enum):
    STARTING = "starting"
    READY = "ready"  # idle or busy: see `inflight`
    STOPPING = "stopping"
    DEAD = "dead"


class InstanceGone(Exception):
    """The instance died while an invocation was in flight (or before it was sent)."""


class NotStarted(InstanceGone):
    """A call that ran none of the function's code when its instance ended, so it may be tried on another
    instance (invoker.py), as a start lost before it was ready is tried again (scheduler/starts.py): a function
    zygote's offered child, taken (`Instance.taken`), died on its own before its `Ready` (the function's code runs
    only after `Ready` is sent); or the call was written behind another on an ordered instance (`Instance.ordered`)
    and that one had not answered when the instance ended (every frame the instance sent was read: `kill` lets
    the connection end by itself when calls wait behind the one running)."""


class InitFailed(Exception):
    def __init__(self, error: dict, logs: list[tuple[float, str, str]]):
        super().__init__(error.get("errorMessage", "init failed"))
        self.error = error
        self.logs = logs


class Instance(asyncio.BufferedProtocol):
    def __init__(self, instance_id: str, revision_key: str, on_lost: Callable[[Instance], None]):
        self.id = instance_id
        self.revision_key = revision_key
        self.on_lost = on_lost
        self.state = State.STARTING
        self.pid = 0
        self.inflight = 0
        self.served = 0
        self.cold_claimed = False  # the first invocation served by an instance is its cold start
        self.created = time.monotonic()
        self.last_used = self.created
        self.init_ms = 0.0
        self.info = ""
        self.exit_status: int | None = None
        self.oom = False
        self.kill_reason = ""
        self.pipelined = False  # taken before its `Ready` came (`taken`)
        self.ordered = False  # it runs its calls one at a time in the order written (its `Ready` says: protocol.Ready)
        self.listed = False  # on its pool's list of ordered instances a call may be written behind (scheduler/pool.py)
        self._draining = False  # killed with calls behind the one running: it ends by itself, nothing more written
        self._cut = False  # the node closed the connection (`_abort`, `close`): frames it sent may be left unread
        self.fault = ""  # why it died, in its own words (protocol.Fault) or the kernel's (sandbox/auditlog.py)
        self.uid = 0  # the function's uid in the sandbox (0: none of its own)
        self.memory: Any = None  # its cgroup's sandbox.cgroups.MemoryGauge (peak, OOM kills), when it has one
        self._exit_event = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._reader = FrameReader()
        self._waiting: dict[int, asyncio.Future[Result]] = {}
        self._partial: dict[int, list[LogLine]] = {}  # lines streamed ahead of a result (protocol.Logs)
        self._streams: dict[int, ResponseStream] = {}  # invocations streaming their response (protocol.Head)
        self._seq = 0
        self._out: list[bytes] = []  # frames held to the end of this loop turn (`_put`)
        # (kept: asyncio.get_running_loop() is a getpid() system call each time)
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[Ready] = self._loop.create_future()

    # --- asyncio.BufferedProtocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:  # (asyncio.BufferedProtocol: reads go straight into it)
        return self._reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        try:
            for raw, shared in self._reader.buffer_updated(nbytes):
                msg = from_instance_decoder.decode(raw)
                if type(msg) is Chunk:  # (first: a streamed response is many of these)
                    stream = self._streams.get(msg.id)
                    if stream is None:
                        raise FrameError(f"chunk for invocation {msg.id}, which is not streaming")
                    stream.feed(bytes(msg.data) if shared else msg.data)  # (a view of the shared buffer: copied)
                    continue
                if type(msg) is Result:
                    fut = self._waiting.pop(msg.id, None)
                    stream = self._streams.pop(msg.id, None) if fut is None and self._streams else None
                    if fut is None and stream is None:
                        raise FrameError(f"result for unknown invocation {msg.id}")
                    if self._partial:
                        early = self._partial.pop(msg.id, None)
                        if early:
                            msg.logs[:0] = early
                    if stream is not None:
                        stream.end(msg)
                    elif not fut.done():  # type: ignore[union-attr]
                        fut.set_result(msg)
                elif type(msg) is Head:  # the invocation streams: its future resolves with the stream
                    fut = self._waiting.pop(msg.id, None)
                    if fut is None:
                        raise FrameError(f"response head for unknown invocation {msg.id}")
                    stream = self._streams[msg.id] = ResponseStream(msg.id, msg.status, msg.headers, self._pause,
                                                                    self._loop)
                    if not fut.done():
                        fut.set_result(stream)  # type: ignore[arg-type]
                    else:  # (the caller gave up already: timed out or cancelled) nobody reads it
                        stream.cancel()
                        self.cancel(msg.id)
                elif type(msg) is Logs:  # lines of a long invocation (or stream), ahead of its result
                    if msg.id in self._waiting or msg.id in self._streams:
                        self._partial.setdefault(msg.id, []).extend(msg.logs)
                elif type(msg) is Ready:
                    if self._ready.done():
                        raise FrameError("duplicate ready frame")
                    self.ordered = msg.ordered
                    self._ready.set_result(msg)
                elif type(msg) is InitError:
                    if not self._ready.done():
                        self._ready.set_exception(InitFailed(msg.error, msg.logs))
                elif type(msg) is Fault:
                    self.fault = msg.reason[:500]
        except (FrameError, msgspec.DecodeError, msgspec.ValidationError) as e:
            log.warning("instance %s sent an invalid frame (%s): killing it", self.id, e)
            self.kill(f"protocol violation: {e}")

    def behind(self, fut: asyncio.Future[Result]) -> bool:
        """Is `fut`'s call behind another on this ordered instance, not started as far as the node has read?"""
        if not self.ordered:
            return False
        head = _oldest(self._waiting, self._streams)
        return head is not None and self._waiting.get(head) is not fut

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        prev = self.state
        self.state = State.DEAD
        gone = InstanceGone(self.kill_reason or "connection closed")
        if not self._ready.done():
            self._ready.set_exception(gone)
            if self.pipelined and not self.kill_reason:  # (killed by the node, it ends the calls its way)
                gone = NotStarted(f"the instance ended before it started ({gone})")
        # An ordered instance whose every frame was read (not cut off, `kill`, nor by a failed write, EPIPE: a reset
        # comes after its frames) ran at most the oldest call without a Result: those behind it never started.
        read = not self._cut and (exc is None or type(exc) is ConnectionResetError)
        head = _oldest(self._waiting, self._streams) if self.ordered and read else None
        for inv_id, fut in self._waiting.items():
            if not fut.done():
                fut.set_exception(gone if head is None or inv_id == head else NotStarted(
                    f"the instance ended before it started (it was behind another call: {gone})"))
        self._waiting.clear()
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.fail(GONE, {"code": "function_crashed",
                               "message": f"the function's instance ended mid-stream: {self.kill_reason or 'connection closed'}"})
        if prev is not State.DEAD:
            self.on_lost(self)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def attach(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: self, sock)

    async def wait_ready(self, timeout: float) -> Ready:
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            self.kill(f"did not become ready within {timeout:.1f} s")
            raise
        self.pid = ready.pid or self.pid
        self.init_ms = ready.init_ms
        self.info = ready.info
        self.state = State.READY
        return ready

    def taken(self, info: str, init_ms: float) -> None:
        """Ready for frames before its `Ready` came (a function zygote's offered child, `Take` written: see
        `InstanceManager._take_offer`). Its `Ready` is still checked when it comes (a second one kills it),
        and a death before it fails the calls written to it. (Its handle was made by `fnstart._handle`, which
        already marked its `Ready` as awaited by nobody.)"""
        self.info = info
        self.init_ms = init_ms
        self.state = State.READY
        self.pipelined = True

    async def ready_seen(self) -> None:
        """Until its `Ready` came (raises if it failed or the connection was lost first); unlike `wait_ready`, it
        changes nothing (an offered child's handle, not yet taken: fnzygote.py `offer_ready`)."""
        await asyncio.shield(self._ready)

    def ready_unawaited(self) -> None:
        """Nobody will await this instance's `Ready` (an offered child's handle, taken or dropped unused): its
        loss is marked retrieved, not logged as a future whose exception was never retrieved."""
        self._ready.add_done_callback(_retrieved)

    def invoke(self, inv: Invoke) -> asyncio.Future[Result]:
        """Send `inv`; the returned future resolves with its Result (or raises InstanceGone)."""
        if self._transport is None:
            raise InstanceGone(self.kill_reason or "instance is not connected")
        self._seq += 1
        inv.id = self._seq
        fut: asyncio.Future[Result] = self._loop.create_future()
        self._waiting[self._seq] = fut
        if self.inflight > 1:  # others in flight here: held to the end of the turn (`_put`)
            self._put(encode(inv))
        elif self._out:  # the only call, behind frames held in this turn (`hold`): with them, at once
            self._out.append(encode(inv))
            self._flush()
        else:  # the only call: at once (a loop turn later would only add latency: nothing to join it with)
            self._transport.write(encode(inv))
        return fut

    def hold(self, frame: bytes) -> bool:
        """Write `frame` with the first call's `Invoke` if one comes in this turn of the loop, else at the turn's
        end (`_put`): an offered child's `Take` (instances/fnzygote.py). False when the connection is gone."""
        if self._transport is None or self._transport.is_closing():
            return False
        self._put(frame)
        return True

    def _put(self, frame: bytes) -> None:
        """Write `frame` at the end of this loop turn, with the others written to this instance in the same
        turn: an instance with concurrency > 1 handed several calls in one turn gets them in one write (one
        system call here, one wake-up there, one read). A frame written at once while some are held goes
        through here too, so their order is kept."""
        out = self._out
        if not out:
            self._loop.call_soon(self._flush)
        out.append(frame)

    def _flush(self) -> None:
        out = self._out
        if self._transport is not None and out and not self._transport.is_closing() and not self._draining:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def cancel(self, inv_id: int, reason: str = "client disconnected") -> None:
        """Tell the instance to stop invocation `inv_id` (a stream nobody reads any more); it still answers
        with its Result."""
        if self._transport is not None:
            self._put(encode(Cancel(inv_id, reason)))

    def send_chunk(self, inv_id: int, data: bytes) -> None:
        """A piece of what the caller sends to invocation `inv_id` (a WebSocket passed through: wsapi/passthrough.py)."""
        if self._transport is not None and not self._draining:
            if self._out:  # (after the frames held in this turn: an Invoke comes before its chunks)
                self._flush()
            self._transport.writelines(encode_chunk(inv_id, data))

    def backlog(self) -> int:
        """Bytes written to the instance that it has not read yet (a caller sending faster waits: gateway/h2c.py)."""
        if self._transport is None:
            return 0
        return self._transport.get_write_buffer_size() + sum(map(len, self._out))

    def _pause(self, on: bool) -> None:
        """Stop (on) or resume reading the instance's frames: back-pressure from a stream's slow reader."""
        transport = self._transport
        if transport is not None:
            if on:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def forget(self, inv_id: int) -> None:
        self._waiting.pop(inv_id, None)
        self._partial.pop(inv_id, None)

    def printed_so_far(self, inv_id: int) -> list[LogLine]:
        """The lines invocation `inv_id` streamed before it ended without a result (a timeout, a crash)."""
        return self._partial.pop(inv_id, [])

    def kill(self, reason: str) -> None:
        """SIGKILL the process and close the connection. Idempotent. An ordered instance with calls behind the one it
        runs is not cut off: its connection ends with the process (EOF, or its exit report's grace: exits.py), every
        frame it sent read, so a call behind is known not to have started (`connection_lost`) unless the Result
        ahead of it came first; cut off after `DRAIN_S` if neither comes (then every call on it is a crash)."""
        if not self.kill_reason:
            self.kill_reason = reason
        if self.state is not State.DEAD:
            self.state = State.STOPPING
        alive = self.pid and self.exit_status is None
        if alive:
            with contextlib.suppress(ProcessLookupError):  # (gone already: its connection ends by itself)
                os.kill(self.pid, signal.SIGKILL)
        if self._transport is None:
            return
        if alive and self.ordered and len(self._waiting) + len(self._streams) > 1:
            if not self._draining:
                self._draining = True
                self._transport.resume_reading()  # (a stream's slow reader may have paused it)
                self._loop.call_later(DRAIN_S, self._abort)
            return
        self._abort()

    def _abort(self) -> None:
        transport = self._transport
        if transport is not None:
            # (after its exit was reported, the frames the process sent were read in the grace exits.py gave them:
            # cut off only while it may still be sending)
            self._cut = self._cut or self.exit_status is None
            transport.abort()

    def close(self) -> None:
        """Graceful stop: closing our end makes the instance's read loop end and the process exit."""
        if self.state is not State.DEAD:
            self.state = State.STOPPING
        if self._transport is not None:
            self._cut = True
            self._flush()  # (frames held in this turn go first)
            self._transport.close()

    def exited(self, status: int, oom: bool) -> None:
        self.exit_status = status
        self.oom = oom
        if self.memory is not None:
            self.memory.close()
        self._exit_event.set()

    async def wait_exit(self, timeout: float) -> int | None:
        try:
            await asyncio.wait_for(self._exit_event.wait(), timeout)
        except TimeoutError:
            return None
        return self.exit_status

    def describe_exit(self) -> str:
        """A human description of why the process ended, for the caller and the activation."""
        return describe_exit(self)


def describe_exit(inst: Instance) -> str:
    """A human description of why `inst`'s process ended, for the caller and the activation."""
    if inst.oom:
        return "out of memory: the instance exceeded its memory limit and was killed"
    st = inst.exit_status
    if st is None:
        return inst.kill_reason or "the instance's connection closed unexpectedly"
    if os.WIFSIGNALED(st):
        sig = os.WTERMSIG(st)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        why = f" ({inst.kill_reason})" if inst.kill_reason else ""
        if sig == signal.SIGSYS and not why:
            why = f": {inst.fault}" if inst.fault else ": a system call outside its runtime's seccomp allow-list"
        return f"killed by {name}{why}"
    if os.WIFEXITED(st):
        return f"exited with code {os.WEXITSTATUS(st)}"
    return f"ended with wait status {st}"


def _oldest(waiting: dict[int, Any], streams: dict[int, Any]) -> int | None:
    """The oldest call written to an instance without its Result yet (a streaming one included): on an ordered
    instance, the one it runs (or will run next)."""
    oldest = next(iter(waiting), None)  # (written in order: the dict keeps it)
    if streams:
        first = min(streams)
        oldest = first if oldest is None else min(oldest, first)
    return oldest


def _retrieved(fut: asyncio.Future[Ready]) -> None:
    """(Nobody awaits a taken instance's `Ready`: its loss is marked retrieved, not logged as never retrieved.)"""
    if not fut.cancelled():
        fut.exception()
