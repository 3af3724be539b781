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
    no copy of the bytes.)"""

    id: int
    data: memoryview


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    """Server → instance: stop invocation `id` (its client went away mid-stream). The instance closes the
    function's stream (Python: `GeneratorExit` in the generator, or the async generator's task cancelled;
    Node: the response stream's `close`) and still answers with the invocation's `Result`."""

    id: int
    reason: str = "client disconnected"


FromInstance = Result | Ready | InitError | Fault | Logs | Head | Chunk
ToInstance = Invoke | Cancel

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
    """Incremental frame splitter for a byte stream (used by the server's asyncio protocol).

    Frames are handed out as views, not copies: a frame that arrived whole within one read is a view of that
    read's bytes; a large frame spread over several reads (a streamed response's chunk) is copied once, into a
    buffer of its own size, as its pieces come; only small leftovers are joined. (A view keeps its buffer alive
    while a decoded `Chunk` refers to it; every other field msgspec decodes is a copy.)"""

    __slots__ = ("_buf", "_filled", "_frame", "_max")

    LARGE = 64 * 1024  # a frame from this size on, cut by the end of a read, is gathered in a buffer of its own

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = b""  # the start of a small frame, or of a length prefix, cut by the end of the last read
        self._max = max_frame
        self._frame: bytearray | None = None  # a large frame being gathered
        self._filled = 0

    def feed(self, data: bytes) -> list[memoryview]:
        frames: list[memoryview] = []
        view = memoryview(data)
        frame = self._frame
        if frame is not None:
            filled = self._filled
            take = min(len(frame) - filled, len(view))
            frame[filled:filled + take] = view[:take]
            self._filled = filled = filled + take
            if filled < len(frame):
                return frames
            frames.append(memoryview(frame))
            self._frame = None
            view = view[take:]
        if self._buf:
            view = memoryview(self._buf + view)  # (small: a few bytes of a prefix, or a frame under LARGE)
            self._buf = b""
        pos = 0
        n = len(view)
        while n - pos >= 4:
            (size,) = HEADER.unpack_from(view, pos)
            if size > self._max:
                raise FrameError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
            end = pos + 4 + size
            if end > n:
                if size >= self.LARGE:
                    frame = self._frame = bytearray(size)
                    frame[: n - pos - 4] = view[pos + 4 :]
                    self._filled = n - pos - 4
                    return frames
                break
            frames.append(view[pos + 4 : end])
            pos = end
        if pos < n:
            self._buf = bytes(view[pos:])
        return frames
