"""The instance wire protocol: frames between the server and an instance process.

A frame is a 4-byte big-endian length followed by a msgpack body. Bodies are `msgspec.Struct`s with a
tag, decoded against a strict union so an instance can never make the server unpickle or construct
anything but these types. The server treats every frame from an instance as untrusted: the size is
capped (`MAX_FRAME`) and ids are checked against what the server sent.

Server → instance: `Invoke`, `Cancel`.   Instance → server: `Ready`, `InitError`, `Result`, `Fault`, `Logs`,
and for a streamed response `Head`, then `Chunk`s, then its `Result` (the end: logs, run time, an error).
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

MAX_FRAME = 64 * 1024 * 1024  # a frame larger than this is a protocol violation
HEADER = struct.Struct(">I")


class LogLine(msgspec.Struct, array_like=True, gc=False):
    """One captured line of a function's output. Instances may send it as a plain `[ts, stream, line]`
    array (that is its wire form); the server decodes it straight into this struct, which is what the
    activation record keeps, so no per-line conversion happens on the invocation path. Not tracked by the
    garbage collector (`gc=False`): it holds only a float and two strings."""

    ts: float  # epoch seconds
    stream: str  # "stdout" | "stderr"
    line: str

    # It also reads like the (ts, stream, line) tuple it is on the wire.
    def __iter__(self) -> Any:
        return iter((self.ts, self.stream, self.line))

    def __getitem__(self, i: int) -> Any:
        return (self.ts, self.stream, self.line)[i]

    def __len__(self) -> int:
        return 3


class Invoke(msgspec.Struct, tag="invoke", array_like=True):
    """One invocation. `kind` says how to read the rest: "http" (a request through the gateway),
    "event" (a raw payload from the invoke API) or "cloudevent" (a trigger's event: `body` is a CloudEvent
    in structured JSON form, see `polyfn.events`)."""

    id: int  # per-connection sequence number, echoed in the Result
    activation_id: str
    kind: str
    deadline: float  # epoch seconds
    method: str = ""
    path: str = ""
    query: str = ""
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    content_type: str = ""
    trace_id: str = ""
    # The verified end user behind the call (an app's signed-in user, `polyfn.apps`), or None. Only the node
    # sets it, after checking a token; flavors put it where each vendor's code looks (getWXContext().OPENID,
    # context.auth, requestContext.authorizer, context.identity). Keys: app, appid, uid, openid, unionid,
    # email, provider, claims (the token's), token (the access token, to call other functions as the user).
    identity: dict[str, Any] | None = None


class Result(msgspec.Struct, tag="result", array_like=True):
    """The outcome of one invocation. `error` is the function's own error payload (vendor shape),
    present when the handler raised; `status` is then 500 unless the flavor says otherwise."""

    id: int
    status: int = 200
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    error: dict[str, Any] | None = None
    logs: list[LogLine] = []  # [ts, stream, line] arrays on the wire
    run_ms: float = 0.0


class Ready(msgspec.Struct, tag="ready", array_like=True):
    pid: int
    init_ms: float
    info: str = ""  # how the instance started (e.g. "fork from python zygote")
    # the instance runs its calls one at a time, in the order their `Invoke` frames came, reading the next only
    # when the one before has sent its Result (the Python runtime's blocking loop: a sync handler, concurrency 1):
    # a call may be written behind the one it runs (scheduler/pool.py `_behind`). False from every other loop
    # (they start each frame as it comes) and from runtimes that do not send it.
    ordered: bool = False


class InitError(msgspec.Struct, tag="init_error", array_like=True):
    """The instance could not load the function. Reported once, then the process exits."""

    error: dict[str, Any]  # {"errorType": ..., "errorMessage": ..., "stackTrace": [...]}
    logs: list[LogLine] = []


class Fault(msgspec.Struct, tag="fault", array_like=True):
    """The instance is about to die and says why (a system call the seccomp filter refused): the server
    adds it to how the process ended. It carries no result and changes nothing else."""

    reason: str


class Logs(msgspec.Struct, tag="logs", array_like=True):
    """Lines invocation `id` printed so far, sent before its Result once it has run a while (a Python instance
    serving one invocation at a time streams them), so what a function printed before its timeout killed it
    is kept. The Result then carries only the lines printed since."""

    id: int
    logs: list[LogLine] = []


class Head(msgspec.Struct, tag="head", array_like=True):
    """Invocation `id` streams its response: the status and headers, sent before its first `Chunk`. The
    invocation then ends with its `Result`, whose body is empty and whose `error`, when set, says the
    stream broke off (the client sees an error marker; docs/streaming.md)."""

    id: int
    status: int = 200
    headers: list[tuple[str, str]] = []


class Chunk(msgspec.Struct, tag="chunk", array_like=True, gc=False):
    """A piece of invocation `id`'s streamed response body, in order. (Decoded as a view of the frame:
    no copy of the bytes.) From the server to an `http` runtime's instance: a piece of a WebSocket passed through
    to the program (an invocation of kind `websocket`: wsapi/passthrough.py)."""

    id: int
    data: memoryview


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    """Server → instance: stop invocation `id` (its client went away mid-stream). The instance closes the
    function's stream (Python: `GeneratorExit` in the generator, or the async generator's task cancelled;
    Node: the response stream's `close`) and still answers with the invocation's `Result`."""

    id: int
    reason: str = "client disconnected"


FromInstance = Result | Ready | InitError | Fault | Logs | Head | Chunk
ToInstance = Invoke | Cancel | Chunk

_encoder = msgspec.msgpack.Encoder()
to_instance_decoder = msgspec.msgpack.Decoder(ToInstance)
from_instance_decoder = msgspec.msgpack.Decoder(FromInstance)


def encode(msg: msgspec.Struct) -> bytes:
    """Length-prefixed frame, built with one allocation for the body and one concatenation."""
    body = _encoder.encode(msg)
    return HEADER.pack(len(body)) + body


_CHUNK_TAG = _encoder.encode("chunk")


def encode_chunk(inv_id: int, data: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
    """A `Chunk` frame as pieces to send with one `sendmsg` (or `writelines`): the length prefix and the msgpack
    header, then `data` itself, never copied into a frame buffer."""
    n = len(data)
    head = b"\x93" + _CHUNK_TAG + _encoder.encode(inv_id) + (
        b"\xc4" + bytes((n,)) if n < 256 else b"\xc5" + n.to_bytes(2, "big") if n < 65536 else b"\xc6" + n.to_bytes(4, "big"))
    return [HEADER.pack(len(head) + n) + head, data]


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


class FrameReader:
    """Incremental frame splitter for a byte stream, with the buffer the bytes are read into: the server's
    instance connection is an `asyncio.BufferedProtocol` whose `get_buffer`/`buffer_updated` are these, so the
    kernel copies straight into it (no bytes object per read, no copy into a frame).

    Small frames are read into one scratch buffer that every reader of the process shares (reads and their
    processing never interleave on the event loop's thread; an idle instance keeps only the few bytes of a
    frame cut by the end of a read) and handed out as views of it, valid only until the next `get_buffer` of any
    reader (`buffer_updated` returns them with `shared` True: a decoded `Chunk` from one must copy its data). A
    frame from `LARGE` bytes on (a streamed response's chunk) that did not arrive whole gets a buffer of its own
    and the next reads go straight into it: handed out with `shared` False, it may be kept. Not for several
    threads at once."""

    __slots__ = ("_base", "_filled", "_frame", "_max", "_pending")

    LARGE = 64 * 1024
    _scratch = bytearray(256 * 1024)  # (shared; a read takes at most what is free in it)

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._max = max_frame
        self._pending = b""  # the start of a small frame (or of a length prefix) cut by the end of the last read
        self._base = 0  # where the last read began in the scratch buffer (after the pending bytes)
        self._frame: bytearray | None = None  # a large frame being gathered
        self._filled = 0

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        frame = self._frame
        if frame is not None:
            return memoryview(frame)[self._filled:]
        n = self._base = len(self._pending)
        if n:
            self._scratch[:n] = self._pending
        return memoryview(self._scratch)[n:]

    def buffer_updated(self, nbytes: int) -> list[tuple[memoryview, bool]]:
        """`nbytes` were read into the last `get_buffer`: the frames now whole, each with `shared`."""
        frames: list[tuple[memoryview, bool]] = []
        frame = self._frame
        if frame is not None:
            self._filled += nbytes
            if self._filled == len(frame):
                self._frame = None
                frames.append((memoryview(frame), False))
            return frames
        buf = self._scratch
        end = self._base + nbytes
        view = memoryview(buf)
        pos = 0
        while end - pos >= 4:
            (size,) = HEADER.unpack_from(buf, pos)
            if size > self._max:
                raise FrameError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
            if end - pos - 4 < size:
                if size >= self.LARGE:  # the rest goes straight into a buffer of its own
                    frame = self._frame = bytearray(size)
                    have = end - pos - 4
                    frame[:have] = view[pos + 4:end]
                    self._filled = have
                    pos = end
                break
            frames.append((view[pos + 4:pos + 4 + size], True))
            pos += 4 + size
        self._pending = bytes(view[pos:end]) if pos < end else b""
        return frames

    def feed(self, data: bytes) -> list[bytes | memoryview]:
        """The frames whole after `data` (a caller that is handed bytes, not a buffer to fill): shared ones
        copied out."""
        out: list[bytes | memoryview] = []
        view = memoryview(data)
        while view:
            target = self.get_buffer()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            view = view[n:]
            out += [f if not shared else bytes(f) for f, shared in self.buffer_updated(n)]
        return out
