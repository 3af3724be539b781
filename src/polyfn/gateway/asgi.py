"""Raw ASGI handler for `/fn/{name}[/{path}]`: no framework routing, no models, bytes in and bytes out.

The function sees the method, the path after its name (always starting with `/`), the raw query string,
the headers and the body; its status, headers and body go back as they are (minus framing headers, which
the server sets).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, NamedTuple

from starlette.responses import Response

from polyfn.call import Call
from polyfn.gateway import cors
from polyfn.gateway.respond import respond
from polyfn.headers import is_internal
from polyfn.invoker import Invoker, Outcome, platform_error
from polyfn.observe.tracing import parse_traceparent
from polyfn.tenancy import qualify

PREFIX_LEN = len("/fn/")
_CLOSE = [(b"connection", b"close")]  # a body past the limit is not read on: the connection goes
_GONE: Any = object()  # `_read_body`'s answer when the client left mid-body
_NO_TRACE = ("", "")


def route(path: str) -> tuple[str, str]:
    """`/fn/NAME[/REST]` → (NAME, the path the function sees: "/REST", or "/"); NAME is "" when the path has none."""
    name, slash, sub = path[PREFIX_LEN:].partition("/")
    return name, "/" + sub if slash else "/"


class Request(NamedTuple):
    """A `/fn/` request as the gateway reads it (`Gateway.request`)."""

    name: str  # the function ("" when the path has none)
    fn_path: str  # the path the function sees
    headers: list[tuple[str, str]]  # as passed on (the node's own `x-polyfn-*` taken out)
    content_type: str
    length: int  # content-length, -1 when absent
    trace: tuple[str, str]
    is_async: bool
    callback: str | None
    active: Any
    spec: Any


_new_tuple = tuple.__new__


async def _given(out: Outcome) -> Outcome:
    return out


async def _with_cors(coro: Awaitable[Outcome], rules: Any, headers: list[tuple[str, str]]) -> Outcome:
    out = await coro
    out.headers.extend(cors.response_headers(rules, headers))
    return out


class Gateway:
    def __init__(self, invoker: Invoker, keys: Any = None, queue: Any = None):
        self.invoker = invoker
        self.max_payload = invoker.max_payload
        self.keys: Any = keys  # polyfn.auth.keys.KeyRing, for functions with `auth: key`
        self.queue: Any = queue  # the node's AsyncQueue, for `X-Polyfn-Async: true` requests

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method, query = scope["method"], scope["query_string"]
        req = self.request(scope["path"], scope["headers"])
        early = self.early(req, method, query)
        if early is not None:
            await send_outcome(send, early)
            return
        if req.length > self.max_payload:
            out = platform_error(413, "payload_too_large",
                                 f"the payload is {req.length} bytes; the limit is {self.max_payload}", headers=_CLOSE)
            if req.spec is not None and req.spec.cors is not None:
                out.headers.extend(cors.response_headers(req.spec.cors, req.headers))
        else:
            msg = await receive()  # most requests arrive whole: one message, no need for _read_body's loop
            if msg["type"] != "http.request":
                return  # the client went (or its body did not arrive in time): nothing is run for a partial body
            body = msg.get("body", b"") if not msg.get("more_body") else await self._read_body(receive, msg)
            if body is _GONE:
                return
            out = await self.answer(req, method, query, body)
        if out.stream is not None:
            await relay(out, receive, send)
            return
        await respond(send, out.status, out.headers, out.body)

    def request(self, path: str, raw_headers: list[tuple[bytes, bytes]]) -> Request:
        """What the gateway reads of a `/fn/` request's path and headers, and the one registry lookup of the
        call (the invoker's admission reuses it). Shared by the ASGI path and the direct one (gateway/fn_direct.py)."""
        name, fn_path = route(path)
        headers: list[tuple[str, str]] = []
        content_type = ""
        length = -1
        trace = _NO_TRACE
        is_async = False
        callback = None
        for raw_k, raw_v in raw_headers:  # (decoded, read and the node's own dropped in one pass)
            k = raw_k.decode("latin-1")
            v = raw_v.decode("latin-1")
            if k[:2] in ("x-", "X-") and is_internal(k):  # the node's own (polyfn.headers): read, never passed on
                if k == "x-polyfn-async":  # (names come lowercased: uvicorn's parser, the ASGI spec)
                    is_async = v.lower() == "true"
                continue
            headers.append((k, v))
            if k == "content-type":
                content_type = v
            elif k == "content-length" and v.isdigit():
                length = int(v)
            elif k == "traceparent":
                trace = parse_traceparent(v)
            elif k == "x-callback-url":
                callback = v
        spec = active = None
        if name:
            active = self.invoker.registry.get(name)
            if active is None and len(fn_path) > 1:  # /fn/{namespace}/{name}[/path]: a namespace's function
                fn, slash, sub = fn_path[1:].partition("/")  # (tenancy.py)
                found = self.invoker.registry.get(qualify(name, fn)) if fn else None
                if found is not None:
                    active, name, fn_path = found, found.revision.function, "/" + sub if slash else "/"
            spec = active.revision.spec if active is not None else None
        # (tuple.__new__ straight: the named tuple's own __new__ is a Python function around it)
        return _new_tuple(Request, (name, fn_path, headers, content_type, length, trace, is_async, callback, active,
                                    spec))

    def early(self, req: Request, method: str, query: bytes) -> Outcome | None:
        """The answer given before the body is read (CORS preflight, a refused function key), or None."""
        spec = req.spec
        if spec is not None and (spec.cors is not None or spec.auth == "key"):
            return self._guard(spec, req.name, method, query, req.headers)
        return None

    def answer(self, req: Request, method: str, query: bytes, body: bytes | None) -> Awaitable[Outcome]:
        """The call's outcome for its whole body (None: past the limit → 413), with the function's CORS headers.
        (Not a coroutine itself: a plain call hands back the invoker's, one coroutine level fewer to resume at each
        of the call's waits.)"""
        name = req.name
        if body is None:  # (the rest is not read: the connection closes after the answer)
            coro: Awaitable[Outcome] = _given(platform_error(
                413, "payload_too_large", f"the payload exceeds {self.max_payload} bytes", headers=_CLOSE))
        elif not name:
            coro = _given(platform_error(404, "function_not_found", "no function name in the path: use /fn/NAME"))
        else:
            call = Call(name, "http", "http", method, req.fn_path, query.decode("latin-1"), req.headers, body,
                        req.content_type, req.trace[0], req.trace[1], active=req.active, stream=True)
            if req.is_async and self.queue is not None:
                coro = self._enqueue(call, req.callback)
            else:
                coro = self.invoker.call(call)
        if req.spec is not None and req.spec.cors is not None:
            return _with_cors(coro, req.spec.cors, req.headers)
        return coro

    def _guard(self, spec: Any, name: str, method: str, query: bytes,
               headers: list[tuple[str, str]]) -> Outcome | None:
        """CORS preflight and per-function keys (Azure style: `x-functions-key` header or `?code=`)."""
        if spec.cors is not None and method == "OPTIONS":
            pre = cors.preflight(spec.cors, headers)
            if pre is not None:
                return pre
        if spec.auth == "key":
            from polyfn.auth.function_keys import refusal

            refused = refusal(spec, name, query.decode("latin-1"), headers, self.keys)
            if refused is not None:
                out = platform_error(*refused)
                if spec.cors is not None:
                    out.headers.extend(cors.response_headers(spec.cors, headers))
                return out
        return None
    async def _enqueue(self, call: Call, callback: str | None) -> Outcome:
        from polyfn.errors import PolyfnError

        if callback:
            refusal = self._callback_refusal(call.function, callback, call.headers)
            if refusal is not None:
                return platform_error(400, *refusal)
        call.headers = [(k, v) for k, v in call.headers if k not in ("x-callback-url", "content-length")]
        try:
            aid = await self.queue.enqueue(call, callback)
        except PolyfnError as e:  # the queue's refusal (queue/dispatcher.py `Rejected`)
            return platform_error(e.status, e.code, e.message)
        raw = aid.encode()  # (32 hex digits: json.dumps's bytes, formatted without it)
        return Outcome(202, [(b"content-type", b"application/json"), (b"x-polyfn-activation-id", raw)],
                       b'{"activation_id": "%s", "status": "pending"}' % raw, aid)

    def _callback_refusal(self, name: str, url: str, headers: list[tuple[str, str]]) -> tuple[str, str] | None:
        """(code, message) of a 400 for a callback URL that does not parse or that the SSRF policy refuses (a
        key of scope invoke, or a host in POLYFN_CALLBACK_ALLOW: auth/callbacks.py); None when it may go."""
        from polyfn.auth.callbacks import check_callback

        key = None
        if self.keys is not None:
            for k, v in headers:
                if k == "authorization":
                    key = self.keys.from_authorization(v)
                elif k == "x-functions-key" and key is None:
                    key = self.keys.verify(v)
        return check_callback(url, name, key, self.invoker.settings.callback_hosts)

    async def _read_body(self, receive: Any, msg: dict[str, Any]) -> Any:
        """The rest of a body that arrives in several messages (`msg` is the first); None past the limit,
        `_GONE` when the client went before it was whole."""
        body = msg.get("body", b"")
        if len(body) > self.max_payload:
            return None
        chunks = [body]
        size = len(body)
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return _GONE
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_payload:
                return None
            chunks.append(chunk)
            if not msg.get("more_body"):
                return b"".join(chunks)


_SSE = b"text/event-stream"


async def relay(out: Outcome, receive: Any, send: Any) -> None:
    """Write a streamed response (docs/streaming.md): the head, then each chunk as it comes, in chunked
    transfer encoding (no content-length), nothing buffered. The client leaving cancels the stream (the function
    is told). A stream that broke off ends with an error marker: for `text/event-stream` an `event: error`
    whose data is the error as JSON, then a clean end; for anything else the connection is closed without the
    terminating chunk, so the client sees an incomplete body (curl: "transfer closed with outstanding read data
    remaining"), never a complete-looking one."""
    stream = out.stream
    assert stream is not None
    await send({"type": "http.response.start", "status": out.status, "headers": out.headers})
    watch = asyncio.ensure_future(receive())  # answers http.disconnect once the client has gone
    watch.add_done_callback(lambda t: t.cancelled() or stream.cancel())
    write = _chunk_writer(send)
    try:
        while (data := await stream.next()) is not None:
            if write is not None:
                await write(data)
            else:
                await send({"type": "http.response.body", "body": data, "more_body": True})
    except BaseException:  # (the server stopping this task)
        stream.cancel()
        raise
    finally:
        if not watch.done():
            watch.cancel()
    if watch.done() and not watch.cancelled():
        return  # the client went (and the stream was cancelled): nobody to tell
    if stream.error is None:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif any(k == b"content-type" and v.startswith(_SSE) for k, v in out.headers):
        err = json.dumps(stream.error, separators=(",", ":")).encode()
        await send({"type": "http.response.body", "body": b"event: error\ndata: " + err + b"\n\n", "more_body": False})
    else:
        _break_off(send)


class StreamedResponse(Response):
    """A streamed Outcome as a Starlette/FastAPI response (the invoke API's `mode=stream`, the console), relayed
    as the gateway relays it (`relay`: chunked, error markers)."""

    def __init__(self, out: Outcome):
        super().__init__(status_code=out.status)
        self.out = out

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await relay(self.out, receive, send)


def _chunk_writer(send: Any) -> Any:
    """Under uvicorn, once a chunked response has started: a writer of one chunk that hands the chunk's size line,
    its bytes and the CRLF to the transport as three pieces (sent together, vectored) instead of joining them
    into a copy as uvicorn's `send` does, with `send`'s flow control (wait while the client's socket is full)
    and disconnect check. None elsewhere (then `send` is used)."""
    cycle = getattr(send, "__self__", None)
    if getattr(cycle, "chunked_encoding", None) is not True or cycle.scope.get("method") == "HEAD":
        return None
    transport, flow = cycle.transport, cycle.flow

    async def write(data: Any) -> None:
        if flow.write_paused and not cycle.disconnected:
            await flow.drain()
        if not cycle.disconnected:
            transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))

    return write


def _break_off(send: Any) -> None:
    """End a response mid-body: close the connection without completing it. Under uvicorn `send` is its
    request cycle's bound method, whose transport we close (what was written goes first); elsewhere returning
    without completing the response has the same effect, with a complaint in the server's log."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        cycle.disconnected = True  # (uvicorn: the app did not fail, the connection is over)
        transport.close()


async def send_outcome(send: Any, out: Outcome) -> None:
    """Answer with `out` (its headers plus content-length): gateway/respond.py."""
    await respond(send, out.status, out.headers, out.body)
