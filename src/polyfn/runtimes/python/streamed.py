"""Streamed responses from inside the instance (docs/streaming.md): the head, then each piece the function yields
as a `Chunk` frame; from the blocking loop (`stream_blocking`, on its `Wire`) or on the asyncio loop
(`stream_async`, with back-pressure). A cancel from the server closes the function's generator."""

from __future__ import annotations

import asyncio
import contextvars
import socket
from typing import Any

from polyfn.protocol import HEADER, Cancel, Head, Invoke, encode, encode_chunk, to_instance_decoder
from polyfn.runtimes.python.flavors import Adapter

CHUNK_MAX = 16 << 20  # a larger piece goes in several Chunk frames (a frame is at most protocol.MAX_FRAME)


def piece_bytes(piece: Any) -> Any:
    """A yielded piece as bytes (str: UTF-8); anything else is the function's error."""
    t = type(piece)
    if t is bytes or t is bytearray or t is memoryview:
        return piece
    if t is str:
        return piece.encode()
    raise TypeError(f"a streamed response yields bytes or str, not {t.__name__}")


class Wire:
    """The blocking loop's connection as a stream writer: `chunk` sends a piece without copying it into a frame,
    `cancelled` looks (without waiting) for the server's `Cancel` of the streaming invocation. Frames read
    while looking stay in `data`, the loop's own buffer, for the loop to read next."""

    __slots__ = ("data", "poll", "sock")

    def __init__(self, sock: socket.socket, data: bytearray, poll: Any):
        self.sock, self.data, self.poll = sock, data, poll

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def chunk(self, inv_id: int, piece: Any) -> None:
        n = len(piece)
        if n > CHUNK_MAX:
            view = memoryview(piece).cast("B")
            for i in range(0, n, CHUNK_MAX):
                self.chunk(inv_id, view[i:i + CHUNK_MAX])
            return
        parts = encode_chunk(inv_id, piece)
        sent = self.sock.sendmsg(parts)
        if sent < len(parts[0]) + n:  # (a signal cut the send short: the rest, copied)
            self.sock.sendall((parts[0] + bytes(piece))[sent:])

    def cancelled(self, inv_id: int) -> bool:
        """Has the server cancelled `inv_id` (or closed the connection)? One poll(0) when nothing came."""
        if not self.poll(0):
            return False
        more = self.sock.recv(65536)
        if not more:
            return True
        data = self.data
        data += more
        pos = 0
        while len(data) - pos >= 4:
            (size,) = HEADER.unpack_from(data, pos)
            end = pos + 4 + size
            if end > len(data):
                break
            if size < 64:  # (an Invoke is larger: only a Cancel is decoded here)
                msg = to_instance_decoder.decode(data[pos + 4:end])
                if type(msg) is Cancel:
                    del data[pos:end]
                    if msg.id == inv_id:
                        return True
                    continue
            pos = end
        return False


def stream_blocking(adapter: Adapter, inv: Invoke, parts: tuple[int, list[tuple[str, str]], Any],
                     wire: Wire) -> dict[str, Any] | None:
    """Send the head, then each piece as the function yields it; None when it ended cleanly or was cancelled,
    else the function's error (the Result says it; the edge shows the error marker). A cancel closes the
    generator: `GeneratorExit` at its `yield`."""
    status, headers, chunks = parts
    wire.send(encode(Head(inv.id, status, headers)))
    chunks = sync_iter(chunks)  # (an async generator from a sync handler: stepped on a loop of its own)
    try:
        for piece in chunks:
            piece = piece_bytes(piece)
            if piece:
                wire.chunk(inv.id, piece)
            if wire.cancelled(inv.id):
                break
    except Exception as exc:
        return adapter.fail(inv, exc)[3]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # (a generator that yields again or raises while closing: it is over anyway)
                pass
    return None


def sync_iter(chunks: Any) -> Any:
    return _sync_steps(chunks) if hasattr(chunks, "__anext__") else chunks


def _sync_steps(agen: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
            except GeneratorExit:
                loop.run_until_complete(agen.aclose())
                raise
    finally:
        loop.close()


_DONE: Any = object()


async def stream_async(adapter: Adapter, inv: Invoke, parts: tuple[int, list[tuple[str, str]], Any],
                        writer: asyncio.StreamWriter, pool: Any) -> dict[str, Any] | None:
    """`stream_blocking` on the loop: an async generator is iterated here (a cancel cancels this task: the
    generator sees `CancelledError` at its await, then is closed); a sync generator's steps run in the
    thread pool. Back-pressure: each chunk waits for the connection's buffer to drain."""
    status, headers, chunks = parts
    writer.write(encode(Head(inv.id, status, headers)))
    is_async = hasattr(chunks, "__anext__")
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    step: asyncio.Future[Any] | None = None  # a sync generator's step running in the pool
    try:
        while True:
            if is_async:
                try:
                    piece = await chunks.__anext__()
                except StopAsyncIteration:
                    break
            else:
                step = loop.run_in_executor(pool, ctx.run, next, chunks, _DONE)
                piece = await asyncio.shield(step)  # (a cancel must not cancel the step: the thread runs on)
                step = None
                if piece is _DONE:
                    break
            piece = piece_bytes(piece)
            if piece:
                view = memoryview(piece).cast("B")
                for i in range(0, len(view), CHUNK_MAX):
                    writer.writelines(encode_chunk(inv.id, view[i:i + CHUNK_MAX]))
                await writer.drain()
    except asyncio.CancelledError:  # the server's Cancel: the stream is over, the Result still goes
        if step is not None:  # (a generator can be closed only between its steps: let the running one end)
            await asyncio.wait([step], timeout=1.0)
    except Exception as exc:
        return adapter.fail(inv, exc)[3]
    finally:
        try:
            if is_async:
                await chunks.aclose()
            elif hasattr(chunks, "close"):
                await loop.run_in_executor(pool, ctx.run, chunks.close)
        except BaseException:  # (a generator misbehaving while closing: it is over anyway)
            pass
    return None

