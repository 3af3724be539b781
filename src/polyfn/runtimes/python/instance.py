"""The instance: runs inside the forked, sandboxed child and serves invocations for one revision.

Phases, as in the Lambda runtime client: **init** (sandbox, environment, import the module, find the
handler, wrap it in the flavor's adapter) reports `Ready` or, once, a typed `InitError` and exits;
**invoke** reads `Invoke` frames and answers `Result` frames on the same socket.

Sync handlers with concurrency 1 run in a plain blocking loop (the fastest path: no event loop at all).
Async handlers, or concurrency > 1, run on an asyncio loop (sync handlers then in threads: threadcalls.py).
Output printed by the handler is captured per invocation through a context variable, so concurrent
invocations never mix their logs.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import os
import select
import socket
import time
import traceback
import types
from opcode import opmap
from typing import Any

from polyfn.protocol import (
    HEADER,
    MAX_FRAME,
    Cancel,
    InitError,
    Invoke,
    Ready,
    Result,
    encode,
    to_instance_decoder,
)
from polyfn.runtimes.python.capture import (
    LogBuffer,
    LoopStreams,
    Streamer,
    capture_output,
    current_buffer,
    stream_after,
)
from polyfn.runtimes.python.flavors import Adapter, FunctionMeta, HandlerError, load_adapter
from polyfn.runtimes.python.flavors.base import stream_parts
from polyfn.runtimes.python.startup import InstanceSpec, load_handler, prepare_process, report_refusals
from polyfn.runtimes.python.streamed import Wire, piece_bytes, stream_async, stream_blocking, sync_iter
from polyfn.runtimes.python.threadcalls import ThreadCalls

# os.environ's own mapping (bytes keys and values on POSIX). Writing `os.environ[k] = v` also calls C
# setenv(), and glibc keeps every value ever set (so that pointers handed out by getenv() stay valid): with
# a new trace id per invocation that leaked ~200 bytes per invocation (measured: 198 MB of RSS per million),
# enough to push a busy instance over its memory limit within minutes. The per-invocation values are
# therefore set in the mapping only: Python code (os.environ, os.getenv) sees them; C getenv() and child
# processes started without an explicit env do not (pass `env=os.environ` to give them the trace).
_ENV_DATA: Any = getattr(os.environ, "_data", None) if os.name == "posix" else None


def _set_trace_env(inv: Invoke) -> None:
    """Lambda-style: the current trace in the environment (exact for concurrency 1; with concurrency > 1
    use the context object's `trace_id` / `traceparent`, which are per invocation)."""
    traceparent = f"00-{inv.trace_id}-{inv.activation_id[:16]}-01"
    data = _ENV_DATA
    if data is not None:
        data[b"POLYFN_TRACE_ID"] = inv.trace_id.encode()
        data[b"TRACEPARENT"] = traceparent.encode()
    else:
        os.environ["POLYFN_TRACE_ID"] = inv.trace_id
        os.environ["TRACEPARENT"] = traceparent



def _run_one(adapter: Adapter, inv: Invoke, buf: LogBuffer, wire: Wire | None = None) -> Result:
    """Run one invocation; a streamed response goes out on `wire` as it is made (without one, the tests' harness:
    the stream is read whole into the Result)."""
    if inv.trace_id:
        _set_trace_env(inv)
    t0 = time.perf_counter()
    token = current_buffer.set(buf)
    try:
        value = adapter.handler(*adapter.args(inv))
        parts = stream_parts(value)
        if parts is None:
            status, headers, body = adapter.respond(inv, value)
            error = None
        elif wire is None:
            status, headers, body, error = parts[0], parts[1], b"".join(piece_bytes(p) for p in sync_iter(parts[2])), None
        else:
            status, headers, body = parts[0], [], b""
            error = stream_blocking(adapter, inv, parts, wire)
    except Exception as exc:
        status, headers, body, error = adapter.fail(inv, exc)
    finally:
        current_buffer.reset(token)
    return Result(inv.id, status, headers, body, error, buf.drain(), (time.perf_counter() - t0) * 1000)




async def _run_one_async(adapter: Adapter, inv: Invoke, spec: InstanceSpec, pool: Any,
                         writer: asyncio.StreamWriter | None = None, streams: LoopStreams | None = None) -> Result:
    buf = LogBuffer(spec.log_line_max, spec.log_lines_max, spec.log_bytes_max)
    if inv.trace_id:
        _set_trace_env(inv)
    t0 = time.perf_counter()
    token = current_buffer.set(buf)
    if streams is not None:
        streams.start(buf, inv)
    try:
        value = await adapter.handler(*adapter.args(inv))  # (an async handler: a sync one runs in threadcalls.py)
        parts = stream_parts(value)
        if parts is None:
            status, headers, body = adapter.respond(inv, value)
            error = None
        elif writer is None:
            chunks = parts[2]
            pieces = [p async for p in chunks] if hasattr(chunks, "__anext__") else list(chunks)
            status, headers, body, error = parts[0], parts[1], b"".join(piece_bytes(p) for p in pieces), None
        else:
            status, headers, body = parts[0], [], b""
            error = await stream_async(adapter, inv, parts, writer, pool)
    except Exception as exc:
        status, headers, body, error = adapter.fail(inv, exc)
    finally:
        current_buffer.reset(token)
        if streams is not None:
            streams.stop(inv.id)
    return Result(inv.id, status, headers, body, error, buf.drain(), (time.perf_counter() - t0) * 1000)


def _run_eager(adapter: Adapter, inv: Invoke, spec: InstanceSpec, streams: LoopStreams, stream: Any) -> Result | None:
    """One call of a handler that never waits (`_never_waits`), run to its end at once, inside the call's own
    context (the caller's `ctx.run`), without a task: its coroutine's first step is its whole run. A streamed
    response is handed to `stream(inv, buf, t0, parts)` (a task of its own writes it) and None returned."""
    if inv.trace_id:
        _set_trace_env(inv)
    t0 = time.perf_counter()
    buf = LogBuffer(spec.log_line_max, spec.log_lines_max, spec.log_bytes_max)
    current_buffer.set(buf)  # (in the call's own context, which ends with it: nothing to reset)
    streams.arm(buf, inv)
    try:
        coro = adapter.handler(*adapter.args(inv))
        try:
            coro.send(None)
        except StopIteration as end:
            value = end.value
        else:  # (cannot be: its code has no suspension point)
            coro.close()
            raise RuntimeError("an async handler without await suspended")
        parts = stream_parts(value)
        if parts is not None:
            stream(inv, buf, t0, parts)
            return None
        status, headers, body = adapter.respond(inv, value)
        error = None
    except Exception as exc:
        status, headers, body, error = adapter.fail(inv, exc)
    buf.stream_after = math.inf
    return Result(inv.id, status, headers, body, error, buf.drain(), (time.perf_counter() - t0) * 1000)


_YIELD_VALUE = opmap["YIELD_VALUE"]


def _never_waits(handler: Any) -> bool:
    """An `async def` handler whose body has no `await` (nor `async for`/`async with`): every call of it ends at
    its first step, so `_serve_async` runs its calls eagerly (as Python 3.12's eager tasks do), without a task
    each. Any other handler (one that may wait, a sync one, a callable object or a wrapper) gets its tasks."""
    if type(handler) is not types.FunctionType or not handler.__code__.co_flags & inspect.CO_COROUTINE:
        return False
    code = handler.__code__.co_code  # (2-byte units: an opcode, its argument; inline caches read as zeros)
    return _YIELD_VALUE not in code[::2]


def _serve_blocking(sock: socket.socket, adapter: Adapter, init_buf: LogBuffer, early: bytes = b"") -> None:
    """One invocation at a time. The wait for the next frame is a poll() for POLLIN, not a blocking recv():
    a task asleep in recv() on a Unix socket is also woken each time the server reads this end's result
    (the kernel's write-space wake-up shares that wait queue), which cost both processes a wake-up per
    invocation; poll()'s wait filters by event, so only a new frame wakes us. `early`: frames read before (a
    function zygote's offered child reads its first `Invoke` with its `Take`)."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    wait = poll.poll
    recv = sock.recv
    unpack_from = HEADER.unpack_from
    decode = to_instance_decoder.decode
    send = sock.sendall
    data = bytearray(early)
    init_buf.streamer = Streamer(send)
    wire = Wire(sock, data, wait)
    while True:
        while len(data) < 4:
            wait()
            chunk = recv(65536)
            if not chunk:
                return  # the server closed the connection: shut down
            data += chunk
        (size,) = unpack_from(data)
        if size > MAX_FRAME:
            return
        end = 4 + size
        while len(data) < end:
            wait()
            chunk = recv(max(65536, end - len(data)))
            if not chunk:
                return
            data += chunk
        inv = decode(data[4:end])
        del data[:end]
        if type(inv) is Cancel:  # (an invocation that ended already)
            continue
        # The init buffer serves every invocation: what init printed goes with the first result, and what
        # threads of the function print outside an invocation's context (they do not inherit it; their
        # writes go to the captures' fallback, this buffer) with the current or the next one.
        init_buf.id = inv.id
        init_buf.stream_after = stream_after(inv.deadline, time.monotonic(), time.time())
        try:
            result = _run_one(adapter, inv, init_buf, wire)
        finally:
            init_buf.stream_after = math.inf
        send(encode(result))


async def _serve_async(sock: socket.socket, adapter: Adapter, spec: InstanceSpec, init_buf: LogBuffer,
                       early: bytes = b"") -> None:
    from concurrent.futures import ThreadPoolExecutor

    pool = None if adapter.is_async else ThreadPoolExecutor(spec.concurrency, thread_name_prefix="fn")
    loop = asyncio.get_running_loop()
    # The frames are taken in the protocol's callback (`received`), not through a stream reader: no wake-up of
    # this task, no future, no copy per read. The reader only says when the connection ends (its EOF or error).
    reader = asyncio.StreamReader(limit=MAX_FRAME, loop=loop)
    protocol = _Frames(reader, loop=loop)
    protocol.early = bytes(early)  # (read with the offered child's `Take`: served first)
    transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    tasks: set[asyncio.Task[None]] = set()
    streams = LoopStreams(writer.write)
    running: dict[int, asyncio.Task[None]] = {}

    # Results go out batched per loop turn: the calls that finish in one turn (several, when the server sent
    # several frames at once) leave in one write, so the server reads them in one wake-up. Only results are
    # held; the frames a streamed response or streamed logs send go out at once, and always before their own
    # invocation's result (which is made after them), so no frame of an invocation overtakes another of it.
    out: list[Result] = []

    def flush() -> None:
        if not out:  # (sent already, at the end of a read's callback)
            return
        if init_buf.pending():  # printed during init, or outside any invocation's context (a function's thread)
            out[0].logs[:0] = init_buf.drain()
        writer.write(encode(out[0]) if len(out) == 1 else b"".join([encode(r) for r in out]))
        out.clear()

    def deliver(result: Result) -> None:
        if not out:
            loop.call_soon(flush)
        out.append(result)

    async def one(inv: Invoke) -> None:
        try:
            result = await _run_one_async(adapter, inv, spec, pool, writer, streams)
        finally:
            running.pop(inv.id, None)
        deliver(result)

    def stream(inv: Invoke, buf: LogBuffer, t0: float, parts: Any, finish: Any = None,
               context: contextvars.Context | None = None) -> None:
        """A call's streamed response, written by a task of its own (in `running`: the server's Cancel stops
        it), then its `Result` handed to `finish(result, buf)`, on the loop."""
        t = loop.create_task(streamed(inv, buf, t0, parts, finish or finished), context=context)
        running[inv.id] = t
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    async def streamed(inv: Invoke, buf: LogBuffer, t0: float, parts: Any, finish: Any) -> None:
        streams.watch(buf)  # (its lines from the timer too, while it waits)
        try:
            error = await stream_async(adapter, inv, parts, writer, pool)
        except Exception as exc:
            error = adapter.fail(inv, exc)[3]
        finally:
            running.pop(inv.id, None)
        finish(Result(inv.id, parts[0], [], b"", error, [], (time.perf_counter() - t0) * 1000), buf)

    def finished(result: Result, buf: LogBuffer) -> None:
        streams.stop(result.id)  # (then its lines: never while the streamer sends some)
        result.logs = buf.drain()
        deliver(result)

    # a sync handler: each call whole in a thread, no task (threadcalls.py)
    threaded = None if pool is None else ThreadCalls(adapter, spec, streams, deliver, stream)
    # an async handler that never waits: each call run at once, in a context of its own (as a task would be),
    # without a task; any other async handler: a task per call
    eager = threaded is None and _never_waits(adapter.handler)

    unpack_from = HEADER.unpack_from
    decode = to_instance_decoder.decode
    copy_context = contextvars.copy_context
    data = bytearray()
    me = asyncio.current_task()
    enter, leave = asyncio.tasks._enter_task, asyncio.tasks._leave_task

    def received(chunk: bytes) -> None:
        """Every frame the socket has, per wake-up; the eager calls' results leave together at the end."""
        nonlocal data
        if data:
            data += chunk
            view = data
        else:
            view = chunk  # (most reads end at a frame's end: nothing is copied)
        streams.turn()
        enter(loop, me)  # (what a no-await handler sees as its `current_task()`: this serving task, as before)
        try:
            pos, n = 0, len(view)
            while n - pos >= 4:
                (size,) = unpack_from(view, pos)
                if size > MAX_FRAME:
                    transport.close()
                    return
                end = pos + 4 + size
                if end > n:
                    break
                inv = decode(view[pos + 4:end])
                pos = end
                if type(inv) is Cancel:  # a stream nobody reads any more: its task is cancelled (`stream_async`
                    task = running.get(inv.id)  # turns the CancelledError into the stream's end: the Result goes)
                    if task is not None:
                        task.cancel()
                    continue
                if eager:
                    try:
                        result = copy_context().run(_run_eager, adapter, inv, spec, streams, stream)
                    except Exception as exc:  # (what a task would have reported, never retrieved; the loop goes on)
                        loop.call_exception_handler({"message": "an invocation failed", "exception": exc})
                        continue
                    if result is not None:  # (None: a stream, in a task of its own)
                        out.append(result)
                elif threaded is not None:
                    if inv.trace_id:
                        _set_trace_env(inv)
                    threaded.submit(inv)
                else:
                    t = asyncio.ensure_future(one(inv))
                    running[inv.id] = t
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        finally:
            leave(loop, me)
        if threaded is not None:
            threaded.kick()  # (a thread for the calls this read brought)
        if pos < n:  # (the start of a frame: kept for the next read)
            if view is chunk:
                data = bytearray(chunk[pos:])
            elif pos:
                del data[:pos]
        elif data:
            data = bytearray()
        if out:
            flush()

    protocol.start(received)
    try:
        await reader.read()  # (until the server closes the connection)
    except ConnectionError:
        return


class _Frames(asyncio.StreamReaderProtocol):
    """The instance's connection: what it reads goes to `received` (given by `_serve_async` with `start`), not to
    the reader, which learns only of the end (EOF, or an error); the writer's flow control is the stream
    protocol's. What is read before `start` (the server pipelines the first `Invoke` with the start) waits."""

    received: Any = None
    early = b""

    def data_received(self, data: bytes) -> None:
        if self.received is None:
            self.early += data
        else:
            self.received(data)

    def start(self, received: Any) -> None:
        self._loop.call_soon(self._go, received)  # (from the loop, not from inside the serving task)

    def _go(self, received: Any) -> None:
        self.received = received
        if self.early:
            early, self.early = self.early, b""
            received(early)


def main(spec: InstanceSpec, sock: socket.socket, info: str, prepared: Any = None) -> None:
    """Entry point in the forked child. Never returns normally: the caller `_exit`s."""
    t0 = time.perf_counter()
    init_buf = LogBuffer(spec.log_line_max, spec.log_lines_max, spec.log_bytes_max)
    capture_output(init_buf)
    try:
        applied = prepare_process(spec, prepared)
        report_refusals(spec, sock)
        handler = load_handler(spec)
        meta = FunctionMeta(spec.function, spec.revision, spec.handler, spec.memory_mb, spec.timeout, spec.env)
        adapter = load_adapter(spec.flavor, handler, meta)
    except HandlerError as e:
        sock.sendall(encode(InitError(e.payload(), init_buf.drain())))
        return
    except BaseException as e:  # anything else during init is still reported once, typed
        payload = {
            "errorType": "Runtime.InitError",
            "errorMessage": f"{type(e).__name__}: {e}",
            "stackTrace": traceback.format_exception(e)[-10:],
        }
        sock.sendall(encode(InitError(payload, init_buf.drain())))
        return
    if applied:
        info = info + "; sandbox: " + ", ".join(applied)
    # In a pid namespace our pid means nothing to the server (we are pid 1): 0 keeps the one it knows.
    pid = 0 if prepared is not None and prepared.pid_ns else os.getpid()
    serve(sock, adapter, spec, init_buf, Ready(pid, (time.perf_counter() - t0) * 1000, info))


def serve(sock: socket.socket, adapter: Adapter, spec: InstanceSpec, init_buf: LogBuffer, ready: Ready,
          after_ready: Any = None, early: bytes = b"") -> None:
    """Report `ready` (then run `after_ready()`) and serve invocations until the server closes the connection;
    `early`: frames already read from it."""
    ordered = not (adapter.is_async or spec.concurrency > 1)  # (`_serve_blocking`: one call at a time, in order)
    if ordered:
        ready.ordered = True
    sock.sendall(encode(ready))
    if after_ready is not None:
        after_ready()
    if not ordered:
        try:
            import uvloop

            uvloop.run(_serve_async(sock, adapter, spec, init_buf, early))
        except ImportError:
            asyncio.run(_serve_async(sock, adapter, spec, init_buf, early))
    else:
        _serve_blocking(sock, adapter, init_buf, early)
