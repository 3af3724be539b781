"""The instance wire protocol: frames between the server and an instance process.

A frame is a 4-byte big-endian length followed by a msgpack body. Bodies are `msgspec.Struct`s with a
tag, decoded against a strict union so an instance can never make the server unpickle or construct
anything but these types. The server treats every frame from an instance as untrusted: the size is
capped (`MAX_FRAME`) and ids are checked against what the server sent.

Server → instance: `Invoke`.   Instance → server: `Ready`, `InitError`, `Result`, `Fault`.
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


FromInstance = Result | Ready | InitError | Fault | Logs

_encoder = msgspec.msgpack.Encoder()
to_instance_decoder = msgspec.msgpack.Decoder(Invoke)
from_instance_decoder = msgspec.msgpack.Decoder(FromInstance)


def encode(msg: msgspec.Struct) -> bytes:
    """Length-prefixed frame, built with one allocation for the body and one concatenation."""
    body = _encoder.encode(msg)
    return HEADER.pack(len(body)) + body


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


class FrameReader:
    """Incremental frame splitter for a byte stream (used by the server's asyncio protocol)."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = HEADER.unpack_from(buf, pos)
            if size > self._max:
                raise FrameError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
            if n - pos - 4 < size:
                break
            frames.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return frames
