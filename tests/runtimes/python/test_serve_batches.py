"""The instance's asyncio loop (`_serve_async`: async handlers, or concurrency > 1) takes every frame a read
brings and writes the results of a loop turn together: many frames in one write, and a frame split across
writes, each get their own result, with their own logs and errors, none lost or mixed."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import socket
import sys
import threading
import time
from typing import Any

import pytest

from polyfn.protocol import HEADER, Cancel, Chunk, Invoke, Result, encode, from_instance_decoder
from polyfn.runtimes.python import instance
from polyfn.runtimes.python.capture import Capture, LogBuffer
from polyfn.runtimes.python.flavors import FunctionMeta, load_adapter
from polyfn.runtimes.python.startup import InstanceSpec


async def handler(event: bytes, context: object) -> str:
    n = int(event)
    print(f"call {n} starts")
    for _ in range(n % 3):  # calls finish in a different order than they came
        await asyncio.sleep(0)
    if n == 5:
        raise ValueError("five")
    print(f"call {n} ends")
    return f"answer {n}"


def sync_handler(event: bytes, context: object) -> str:
    print(f"sync {int(event)}")
    return f"answer {int(event)}"


def frames(n: int, first: int = 1) -> bytes:
    return b"".join(encode(Invoke(i, f"a{i}", "event", time.time() + 30, "POST", "/", "", [], str(i).encode()))
                    for i in range(first, first + n))


async def results(sock: socket.socket, want: int) -> dict[int, Result]:
    loop = asyncio.get_running_loop()
    data, out = bytearray(), {}
    while len(out) < want:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        assert chunk, f"the instance closed the connection; results: {sorted(out)}"
        data += chunk
        while len(data) >= 4 and len(data) >= 4 + HEADER.unpack_from(data)[0]:
            end = 4 + HEADER.unpack_from(data)[0]
            msg = from_instance_decoder.decode(bytes(data[4:end]))
            del data[:end]
            assert type(msg) is Result
            out[msg.id] = msg
    return out


@pytest.mark.parametrize("fn, concurrency", [(handler, 1), (handler, 8), (sync_handler, 8)])
def test_many_frames_per_read_each_answered_alone(fn: object, concurrency: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    init_buf = LogBuffer(16384, 1000)
    monkeypatch.setattr(sys, "stdout", Capture("stdout", init_buf))
    adapter = load_adapter("native", fn, FunctionMeta("f", 1, "h.h", 128, 30, {}))
    spec = InstanceSpec(instance_id="i", function="f", revision=1, flavor="native", handler="h.h", code_dir=".",
                        concurrency=concurrency)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)

    async def run() -> dict[int, Result]:
        served = asyncio.ensure_future(instance._serve_async(theirs, adapter, spec, init_buf))
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(ours, frames(8))  # eight frames in one write
        got = await results(ours, 8)
        tail = frames(3, first=9)  # three more, cut mid-frame and mid-header
        for piece in (tail[:3], tail[3:17], tail[17:]):
            await loop.sock_sendall(ours, piece)
            await asyncio.sleep(0.01)
        got.update(await results(ours, 3))
        more = frames(3, first=12)  # a whole frame and the start of the next in one read, then the rest
        cut = len(frames(1, first=12)) + 5
        for piece in (more[:cut], more[cut:]):
            await loop.sock_sendall(ours, piece)
            await asyncio.sleep(0.01)
        got.update(await results(ours, 3))
        ours.close()  # the server leaves: the loop ends
        await asyncio.wait_for(served, 10)
        return got

    got = asyncio.run(run())
    assert sorted(got) == list(range(1, 15))
    for n, res in got.items():
        lines = [line[2] for line in res.logs]
        if fn is sync_handler:
            assert (res.body, lines) == (f'"answer {n}"'.encode(), [f"sync {n}"])
        elif n == 5:
            assert res.error is not None and "five" in str(res.error) and lines == ["call 5 starts"]
        else:
            assert res.body == f'"answer {n}"'.encode()
            assert lines == [f"call {n} starts", f"call {n} ends"]  # its own lines only, in order


def served_by(fn: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, InstanceSpec, LogBuffer, socket.socket,
                                                                 socket.socket]:
    """A native handler at concurrency 8, its output captured, and the two ends of its socket."""
    init_buf = LogBuffer(16384, 1000)
    monkeypatch.setattr(sys, "stdout", Capture("stdout", init_buf))
    adapter = load_adapter("native", fn, FunctionMeta("f", 1, "h.h", 128, 30, {}))
    spec = InstanceSpec(instance_id="i", function="f", revision=1, flavor="native", handler="h.h", code_dir=".",
                        concurrency=8)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    return adapter, spec, init_buf, ours, theirs


async def every_frame(sock: socket.socket, want: int, seen: Any = None) -> dict[int, list[object]]:
    """Every frame the instance sends, by invocation, until `want` results came (`seen(frame)` awaited on each)."""
    loop = asyncio.get_running_loop()
    data, got, done = bytearray(), {}, 0
    while done < want:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        assert chunk, f"the instance closed the connection; frames: {got}"
        data += chunk
        while len(data) >= 4 and len(data) >= 4 + HEADER.unpack_from(data)[0]:
            end = 4 + HEADER.unpack_from(data)[0]
            msg = from_instance_decoder.decode(bytes(data[4:end]))
            del data[:end]
            got.setdefault(msg.id, []).append(msg)  # type: ignore[union-attr]
            done += type(msg) is Result
            if seen is not None:
                await seen(msg)
    return got


def each_answered(got: dict[int, list[object]], lines: Any) -> None:
    """Calls 1-8 each answered with its own `lines(n)`: 5 with its error, 7 with a stream of one chunk."""
    assert sorted(got) == list(range(1, 9))
    for n, msgs in got.items():
        res = msgs[-1]
        assert type(res) is Result
        assert [line[2] for line in res.logs] == lines(n)
        if n == 5:
            assert res.error is not None and "five" in str(res.error)
        elif n == 7:
            assert [type(m).__name__ for m in msgs] == ["Head", "Chunk", "Result"] and res.error is None
            assert bytes(msgs[1].data) == b"chunk 7"  # type: ignore[attr-defined]
        else:
            assert (len(msgs), res.body) == (1, f'"answer {n}"'.encode())


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, pieces: list[bytes]) -> None:
        self.writes.append(b"".join(pieces))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


def test_the_server_writes_the_frames_of_a_turn_together_in_order() -> None:
    """The server's end (`instances.instance.Instance`): the frames of one loop turn leave in one write, in the
    order they were made; a chunk, or a close, first sends what is held."""
    from polyfn.instances.instance import Instance
    from polyfn.protocol import to_instance_decoder

    def decoded(data: bytes) -> list[object]:
        out = []
        while data:
            end = 4 + HEADER.unpack_from(data)[0]
            out.append(to_instance_decoder.decode(data[4:end]))
            data = data[end:]
        return out

    async def run() -> None:
        inst = Instance("i", "f:1", lambda _: None)
        t = Transport()
        inst.connection_made(t)  # type: ignore[arg-type]
        inv = Invoke(0, "a", "event", time.time() + 30, "POST", "/", "", [], b"x")
        inst.inflight = 1  # the only call in flight (concurrency 1): written at once
        inst.invoke(inv)
        assert len(t.writes) == 1
        t.writes.clear()
        inst._seq = 0
        inst.inflight = 3  # (the pool counts a call in before it is sent)
        inst.invoke(inv)
        inst.invoke(inv)
        inst.cancel(1)
        assert t.writes == [] and inst.backlog() > 0
        await asyncio.sleep(0)
        assert len(t.writes) == 1
        assert [(type(m).__name__, m.id) for m in decoded(t.writes[0])] == [("Invoke", 1), ("Invoke", 2), ("Cancel", 1)]
        inst.invoke(inv)
        inst.send_chunk(3, b"abc")  # the Invoke goes before its chunk
        assert len(t.writes) == 3 and [type(m).__name__ for m in decoded(t.writes[1])] == ["Invoke"]
        inst.invoke(inv)
        inst.close()
        assert t.closed and [m.id for m in decoded(t.writes[3])] == [4]  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        assert len(t.writes) == 4

    asyncio.run(run())


async def quick(event: bytes, context: object) -> Any:
    """An async handler that never awaits: its calls are run eagerly, without a task each."""
    n = int(event)
    print(f"quick {n}")
    if n == 5:
        raise ValueError("five")
    if n == 7:
        return streamed(n)
    return f"answer {n}"


TASKS: list[object] = []


async def streamed(n: int) -> Any:
    TASKS.append(asyncio.current_task())  # the stream runs in a task of its own, not in the loop's reader
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
    yield f"chunk {n}"


def test_which_handlers_run_eagerly() -> None:
    async def waits(event: object, context: object) -> None:
        await asyncio.sleep(0)

    async def loops(event: object, context: object) -> None:
        async for _ in streamed(1):
            pass

    async def gives(event: object, context: object) -> None:
        return None

    assert instance._never_waits(quick) and instance._never_waits(gives)
    assert not instance._never_waits(waits) and not instance._never_waits(loops)
    assert not instance._never_waits(sync_handler) and not instance._never_waits(streamed)  # (an async generator)
    assert not instance._never_waits(functools.partial(gives))  # (a wrapper: it may wait)


def test_eager_calls_each_answered_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, spec, init_buf, ours, theirs = served_by(quick, monkeypatch)
    TASKS.clear()

    async def run() -> tuple[dict[int, list[object]], object]:
        served = asyncio.ensure_future(instance._serve_async(theirs, adapter, spec, init_buf))
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(ours, frames(8))
        got = await every_frame(ours, 8)
        ours.close()
        await asyncio.wait_for(served, 10)
        return got, served

    got, reader = asyncio.run(run())
    each_answered(got, lambda n: [f"quick {n}"])  # its own line only
    assert len(TASKS) == 1 and TASKS[0] is not None and TASKS[0] is not reader


BARRIER = threading.Barrier(6, timeout=10)
VAR: contextvars.ContextVar[int] = contextvars.ContextVar("VAR", default=0)
STREAM_GO = threading.Event()


def threaded(event: bytes, context: object) -> Any:
    n = int(event)
    assert VAR.get() == 0  # each call in a context of its own
    VAR.set(n)
    print(f"threaded {n} starts")
    if n <= 6:
        BARRIER.wait()  # six calls at once: none waits behind another
    print(f"threaded {n} ends {VAR.get()}")
    if n == 5:
        raise ValueError("five")
    return blocking_stream(n) if n == 7 else f"answer {n}"


def blocking_stream(n: int) -> Any:
    yield f"chunk {n}"
    STREAM_GO.wait(10)  # until the server's Cancel: the stream ends, its Result still goes
    yield "never read"


def test_sync_calls_run_whole_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync handler with concurrency > 1 (threadcalls.py): calls at once in threads, each with its own context,
    lines and error; a streamed response written from the loop, and stopped by the server's Cancel."""
    adapter, spec, init_buf, ours, theirs = served_by(threaded, monkeypatch)
    STREAM_GO.clear()

    async def run() -> dict[int, list[object]]:
        served = asyncio.ensure_future(instance._serve_async(theirs, adapter, spec, init_buf))
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(ours, frames(8))

        async def cancel(msg: object) -> None:
            if type(msg) is Chunk:  # the caller went away: the server cancels the stream
                await loop.sock_sendall(ours, encode(Cancel(7, "client disconnected")))
                STREAM_GO.set()

        got = await every_frame(ours, 8, cancel)
        ours.close()
        await asyncio.wait_for(served, 10)
        return got

    got = asyncio.run(run())
    each_answered(got, lambda n: [f"threaded {n} starts", f"threaded {n} ends {n}"])


def exchange(served: tuple[Any, InstanceSpec, LogBuffer, socket.socket, socket.socket], writes: list[bytes],
             want: int, on_uvloop: bool = False) -> dict[int, list[object]]:
    """`_serve_async` fed `writes` (one write each, 50 ms apart); every frame back until `want` results."""
    adapter, spec, init_buf, ours, theirs = served

    async def run() -> dict[int, list[object]]:
        task = asyncio.ensure_future(instance._serve_async(theirs, adapter, spec, init_buf))
        loop = asyncio.get_running_loop()
        for i, data in enumerate(writes):
            await asyncio.sleep(0.05 if i else 0)
            await loop.sock_sendall(ours, data)
        got = await every_frame(ours, want)
        ours.close()
        await asyncio.wait_for(task, 10)
        return got

    if not on_uvloop:
        return asyncio.run(run())
    uvloop = pytest.importorskip("uvloop")  # (the instance's loop)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run())


@pytest.mark.parametrize("on_uvloop", [False, True])
def test_frames_already_sent_when_serving_starts(on_uvloop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server pipelines the first `Invoke` with the instance's start: frames in the socket before the loop
    takes it are served (uvloop reads them while the connection is being made)."""
    served = served_by(quick, monkeypatch)
    served[3].sendall(frames(4))
    got = exchange(served, [], 4, on_uvloop)
    assert sorted(got) == [1, 2, 3, 4]
    assert [line[2] for line in got[2][-1].logs] == ["quick 2"]  # type: ignore[attr-defined]


GO = threading.Event()


def relay(event: bytes, context: object) -> str:
    n = int(event)
    if n == 1:  # waits for a call that comes in a later read
        return "released" if GO.wait(10) else "waited in vain"
    if n == 2:
        GO.set()
    return f"answer {n}"


def test_a_blocked_sync_call_does_not_hold_up_the_next_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread that waits inside a call is not counted on for calls that come later: they get a thread."""
    GO.clear()
    got = exchange(served_by(relay, monkeypatch), [frames(1), frames(1, first=2)], 2)
    assert [got[n][-1].body for n in (1, 2)] == [b'"released"', b'"answer 2"']  # type: ignore[attr-defined]


def test_a_batch_of_quick_sync_calls_runs_in_few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 calls in one read of a handler that never waits: one thread takes them in turn and one spare is
    woken (threadcalls.py's relay), not a thread per call."""
    served = served_by(sync_handler, monkeypatch)
    served[1].concurrency = 16
    before = threading.active_count()
    # (on uvloop, the instance's loop: asyncio's hands results back through a socket write, which lets a spare in)
    got = exchange(served, [frames(16)], 16, on_uvloop=True)
    assert sorted(got) == list(range(1, 17))
    assert all([line[2] for line in got[n][-1].logs] == [f"sync {n}"] for n in got)  # type: ignore[attr-defined]
    assert threading.active_count() - before <= 4  # (2, unless the machine stalls the taker past the switch interval)
