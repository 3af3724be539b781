"""The part of an invocation whose function streams its response (docs/streaming.md): the `Outcome` with the
head and the chunks to come, the stream's own limits in place of the invocation timeout (idle and total), the
cancel the instance is told of (and killed for, if it does not end the stream), the activation recorded when
the stream ends, and a stream read whole for an edge that cannot relay one. The invoker (invoker.py) hands a
call here when its instance answers with a `Head` frame."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from polyfn import streaming
from polyfn.config import Settings
from polyfn.headers import safe_headers
from polyfn.instances.instance import Instance
from polyfn.model import Activation, LogLine
from polyfn.outcome import JSON_HEADERS, Outcome, platform_error
from polyfn.protocol import Result
from polyfn.scheduler.deadlines import Deadlines
from polyfn.streaming import ResponseStream

#: seconds an instance has to end a stream it was told to stop (protocol.Cancel) before it is killed
CANCEL_GRACE = 2.0
#: how a stream's end reads in its activation's `status`
_STREAM_STATUS = {streaming.COMPLETE: "success", streaming.ERROR: "error", streaming.DISCONNECTED: "disconnected",
                  streaming.IDLE: "timeout", streaming.TOO_LONG: "timeout", streaming.GONE: "crashed",
                  streaming.CANCELLED: "cancelled"}


def _unanswered(inst: Instance, stream: ResponseStream) -> None:
    if stream.result is None:
        inst.kill(f"did not stop its stream within {CANCEL_GRACE:g} s of being told to")


class StreamedCalls:
    """Streams in flight by activation id (`live`). `running` is the invoker's table of invocations on an
    instance (a stream's entry leaves it when the stream ends); `bounded` and `finish` are the invoker's log
    budget and activation record."""

    def __init__(self, settings: Settings, deadlines: Deadlines,
                 running: dict[str, tuple[Instance, asyncio.Future[Result]]],
                 bounded: Callable[[str, list[LogLine]], list[LogLine]], finish: Callable[..., Outcome]):
        self.settings = settings
        self.max_payload = settings.max_payload
        self.deadlines = deadlines
        self.running = running
        self.bounded = bounded
        self.finish = finish
        self.live: dict[str, ResponseStream] = {}  # activation id → its stream, while one streams

    def begin(self, act: Activation, t0: float, inst: Instance, pool: Any, stream: ResponseStream,
              spec: Any, kind: str = "http") -> Outcome:
        """The Outcome of a call whose function streams: its head now, its chunks in `stream`. The stream runs
        under its own limits (the function's `stream_idle_timeout` without a chunk, `stream_max_duration` in
        all) instead of the invocation timeout; its end records the activation and releases the instance."""
        status = stream.status if type(stream.status) is int and 100 <= stream.status <= 599 else 502
        headers = safe_headers(stream.headers) if stream.headers else []
        headers.append((b"x-polyfn-activation-id", act.id.encode()))
        if act.cold:
            headers.append((b"x-polyfn-cold", b"true"))
        out = Outcome(status, headers, b"", act.id, act.cold, stream=stream)
        self.live[act.id] = stream
        idle, limit = spec.stream_idle_timeout, spec.stream_max_duration
        if kind == "websocket":  # a WebSocket passed through to an http-runtime program (wsapi/passthrough.py)
            idle = spec.ws_idle_timeout or self.settings.ws_idle_timeout
            limit = spec.ws_max_duration or self.settings.ws_max_duration
        if kind in ("websocket", "h2c"):  # (h2c: a connection passed through, under the stream limits: gateway/h2c.py)
            def upstream(data: bytes, send: Any = inst.send_chunk, inv_id: int = stream.inv_id) -> None:
                act.req_bytes += len(data)  # what the client sent, in the activation
                send(inv_id, data)

            stream.upstream = upstream
            stream.backlog = inst.backlog
        self.deadlines.add(stream, time.perf_counter() + min(idle, limit), self._deadline, stream, idle, limit)
        stream.bind(lambda s: self._ended(act, t0, inst, pool, s, out),
                    lambda s, how: self._cancelled(inst, s, how))
        return out

    def _deadline(self, stream: ResponseStream, idle: float, limit: float) -> None:
        """A stream's sweep: past its maximum duration, or idle (no chunk, none waiting for its reader) for
        longer than its idle timeout → stopped, with a typed error the edge shows as its error marker."""
        if stream.ended:
            return
        now = time.perf_counter()
        if now - stream.started >= limit:
            stream.cancel(streaming.TOO_LONG, {"code": "stream_too_long", "message": (
                f"the stream ran for its maximum of {limit:g} s (the function's stream_max_duration)")})
        elif now - stream.last >= idle and not stream.held:
            stream.cancel(streaming.IDLE, {"code": "stream_idle_timeout", "message": (
                f"the function wrote nothing for {idle:g} s (the function's stream_idle_timeout)")})
        else:
            self.deadlines.add(stream, min(max(stream.last, now) + idle, stream.started + limit),
                               self._deadline, stream, idle, limit)

    def _cancelled(self, inst: Instance, stream: ResponseStream, how: str) -> None:
        """Tell the instance to stop the function's stream; kill it if it has not ended it CANCEL_GRACE later."""
        inst.cancel(stream.inv_id, how)
        self.deadlines.add(stream, time.perf_counter() + CANCEL_GRACE, _unanswered, inst, stream)

    def _ended(self, act: Activation, t0: float, inst: Instance, pool: Any, stream: ResponseStream,
               out: Outcome) -> None:
        """The stream's Result came (or its instance died): the activation is recorded with the stream's size,
        time to first byte and how it ended, and the instance goes back to the pool."""
        self.deadlines.discard(stream)
        self.running.pop(act.id, None)
        self.live.pop(act.id, None)
        pool.release(inst)
        res = stream.result
        if res is not None:
            act.run_ms = res.run_ms
            if res.logs:
                act.logs = self.bounded(act.function, res.logs)
        else:
            early = inst.printed_so_far(stream.inv_id)
            if early:
                act.logs = self.bounded(act.function, early)
        act.resp_bytes = stream.bytes
        act.stream = {"bytes": stream.bytes, "chunks": stream.chunks, "end": stream.ended,
                      "ttfb_ms": round((stream.first - t0) * 1000, 3) if stream.first else None}
        if stream.error is not None:
            act.error = stream.error
        status = _STREAM_STATUS.get(stream.ended, "error")
        if status == "crashed" and inst.oom:
            status = "oom"
        self.finish(act, t0, status, out.status, out, b"")

    async def collected(self, out: Outcome) -> Outcome:
        """A streamed response read whole, for an edge that cannot stream (the invoke API, the queue,
        triggers): its chunks joined into the body, within `max_payload`; a stream that broke off answers
        the error it broke off with."""
        stream = out.stream
        assert stream is not None
        parts = []
        size = 0
        while (data := await stream.next()) is not None:
            size += len(data)
            if size > self.max_payload:
                stream.cancel(streaming.ERROR, {"code": "response_too_large", "message": (
                    f"the function streamed over {self.max_payload} bytes to a caller that takes its response "
                    "whole (the limit of a buffered response)")})
                break
            parts.append(data)
        err = stream.error
        if err is None:
            return Outcome(out.status, out.headers, b"".join(parts), out.activation_id, out.cold)
        if "code" not in err:  # the function's own exception, mid-stream
            headers = [h for h in out.headers if h[0] != b"content-type"]
            headers += [*JSON_HEADERS, (b"x-polyfn-function-error", b"Unhandled")]
            return Outcome(500, headers, json.dumps(err).encode(), out.activation_id, out.cold)
        status = 504 if err["code"] in ("stream_idle_timeout", "stream_too_long") else 502
        return platform_error(status, err["code"], err["message"], activation_id=out.activation_id)

    def cancel(self, activation_id: str) -> bool:
        """Cancel the stream of `activation_id`, if one is live (its instance is told, then killed if need be)."""
        stream = self.live.get(activation_id)
        if stream is None:
            return False
        stream.cancel(streaming.CANCELLED, {"code": "function_cancelled",
                                            "message": f"activation {activation_id} was cancelled while it ran"})
        return True
