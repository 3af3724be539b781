"""The Lambda API's invocations: Invoke (RequestResponse, Event, DryRun; a durable function starts an execution)
and InvokeWithResponseStream; the function's outcome in Lambda's words (errors, `X-Amz-Log-Result`)."""

from __future__ import annotations

import base64
import json
import math
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from polyfn import jsontext
from polyfn.api.compat import common, eventstream
from polyfn.api.compat.lambda_face import LambdaFace
from polyfn.api.compat.lambda_wire import A_DURABLE, TAIL_BYTES, LambdaError, _invalid, _request_id
from polyfn.call import Call
from polyfn.invoker import Outcome
from polyfn.model import FunctionInfo
from polyfn.queue.dispatcher import REVISION_HEADER
from polyfn.store.versions import LATEST

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import Activations, AsyncJobs, FunctionStore, Invocations


class LambdaInvoke:
    """`durable` is the durable-execution control plane (lambda_durable.DurableApi), set when it is mounted."""

    def __init__(self, face: LambdaFace, *, settings: Settings, store: FunctionStore, invoker: Invocations,
                 queue: AsyncJobs, recorder: Activations):
        self.face = face
        self.settings = settings
        self.store = store
        self.invoker = invoker
        self.queue = queue
        self.recorder = recorder
        self.durable: Any = None

    async def _invoke_target(self, request: Request, function_name: str) -> tuple[bytes, Any]:
        """The body and the resolved target of Invoke and InvokeWithResponseStream (the caller authorised)."""
        ident, body = await self.face.auth(request)
        self.face.require(ident, "InvokeFunction", self.face.pname(function_name))
        t = await self.face.resolve(function_name, ident.region, request.query_params.get("Qualifier"), route=True)
        return body, t

    async def invoke(self, request: Request, function_name: str) -> Response:
        body, t = await self._invoke_target(request, function_name)
        info = t.info
        h = request.headers
        kind = h.get("x-amz-invocation-type", "RequestResponse")
        log_type = h.get("x-amz-log-type", "None")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            raise _invalid(f"X-Amz-Invocation-Type {kind!r}: use RequestResponse, Event or DryRun")
        self.check_payload(body)
        rid = _request_id()
        if kind == "DryRun":
            return Response(status_code=204, headers={"x-amzn-RequestId": rid})
        if A_DURABLE in info.spec.annotations:  # starts a durable execution
            return await self.durable.invoke(request, t, body, kind, rid)
        fheaders = [("x-amz-invocation-type", kind), ("x-amzn-requestid", rid)]
        if h.get("x-amz-client-context"):
            fheaders.append(("x-amz-client-context", h["x-amz-client-context"]))

        def run() -> Any:
            return self.invoker.call(Call(info.name, "event", "lambda", headers=fheaders, body=body,
                                          content_type="application/json", revision=t.revision))

        if kind == "Event":
            # a version or alias: the job is pinned to its revision (the queue runs the current one otherwise)
            qheaders = fheaders if t.revision is None else [*fheaders, (REVISION_HEADER, str(t.revision.number))]
            try:
                await common.submit_async(self.queue, info.name, "event", "lambda", body, "application/json",
                                          qheaders, job_id=rid.replace("-", ""))
            except common.AsyncRejected as e:
                if e.status >= 500:  # the queue did not take it (the cluster's NATS away): retryable
                    raise LambdaError(500, "ServiceException", e.message) from None
                raise LambdaError(413 if e.status == 413 else 400, "InvalidParameterValueException", e.message) from None
            return Response(status_code=202, headers={"x-amzn-RequestId": rid})
        out = await run()
        return await self.invoke_response(out, info, rid, log_type == "Tail", t.version)

    def check_payload(self, body: bytes) -> None:
        if body:
            try:
                json.loads(body)
            except ValueError:
                raise LambdaError(400, "InvalidRequestContentException",
                                  "Could not parse request body into json: the payload must be JSON") from None
        if len(body) > self.settings.max_payload:
            raise LambdaError(413, "RequestTooLargeException",
                              f"Request must be smaller than {self.settings.max_payload} bytes for the "
                              "InvokeFunction operation")

    async def invoke_stream(self, request: Request, function_name: str) -> Response:
        """InvokeWithResponseStream (boto3 `invoke_with_response_stream`): the function's response as an event
        stream of `PayloadChunk` events as it comes, then `InvokeComplete` (with `ErrorCode`/`ErrorDetails` when
        it failed, `LogResult` with `LogType: Tail`). A function that does not stream answers in one chunk.
        Errors before the first byte (no such function, throttled, too large) are ordinary Lambda errors."""
        body, t = await self._invoke_target(request, function_name)
        info = t.info
        h = request.headers
        kind = h.get("x-amz-invocation-type", "RequestResponse")
        if kind not in ("RequestResponse", "DryRun"):
            raise _invalid(f"X-Amz-Invocation-Type {kind!r}: use RequestResponse or DryRun")
        self.check_payload(body)
        rid = _request_id()
        if kind == "DryRun":
            return Response(status_code=204, headers={"x-amzn-RequestId": rid})
        fheaders = [("x-amz-invocation-type", kind), ("x-amzn-requestid", rid)]
        out = await self.invoker.call(Call(info.name, "event", "lambda", "POST", "/", "", fheaders, body,
                                           "application/json", revision=t.revision, stream=True))
        tail = h.get("x-amz-log-type", "None") == "Tail"
        headers = {"x-amzn-RequestId": rid, "X-Amz-Executed-Version": t.version}
        stream = out.stream
        if stream is None:  # a buffered answer: one chunk, or the error (Lambda's errors before a stream raise here)
            whole = await self.invoke_response(out, info, rid, False, t.version)
            failed = "X-Amz-Function-Error" in whole.headers
            chunks = [] if failed else [eventstream.event("PayloadChunk", whole.body)]
            error = _error_of_payload(whole.body) if failed else None
            ctype = common.outcome_headers(out).get("content-type", "application/json")

            async def events() -> Any:
                for chunk in chunks:
                    yield chunk
                yield await self.complete_event(error, out.activation_id, info, tail, t.version)
        else:
            ctype = next((v.decode("latin-1") for k, v in out.headers if k == b"content-type"), "application/octet-stream")

            async def events() -> Any:
                try:
                    while (data := await stream.next()) is not None:
                        yield eventstream.event("PayloadChunk", data)
                except BaseException:  # the client went (the response's task cancelled)
                    stream.cancel()
                    raise
                err = stream.error
                yield await self.complete_event(None if err is None else (
                    err.get("errorType") or err.get("code", "Unhandled"), err.get("errorMessage") or err.get("message", "")),
                    out.activation_id, info, tail, t.version)

        return StreamingResponse(events(), headers=headers, media_type=ctype)

    async def complete_event(self, error: tuple[str, str] | None, activation_id: str, info: FunctionInfo,
                             tail: bool, version: str) -> bytes:
        done: dict[str, str] = {}
        if error is not None:
            done["ErrorCode"], done["ErrorDetails"] = error
        if tail and activation_id:
            done["LogResult"] = await self.log_tail(activation_id, info, version)
        return eventstream.event("InvokeComplete", json.dumps(done).encode(), "application/json")

    async def invoke_response(self, out: Outcome, info: FunctionInfo, rid: str, tail: bool,
                              version: str = LATEST) -> Response:
        hdrs = common.outcome_headers(out)
        headers = {"x-amzn-RequestId": rid, "X-Amz-Executed-Version": version}
        code = hdrs.get("x-polyfn-error")
        body = out.body
        timeout = info.spec.timeout
        if code is not None:
            err = _error_of(out.body)
            if code == "function_not_found":
                raise LambdaError(404, "ResourceNotFoundException", err.get("message", "Function not found"))
            if code == "too_many_requests":
                raise LambdaError(429, "TooManyRequestsException", "Rate Exceeded.",
                                  {"Retry-After": hdrs.get("retry-after", "1")})
            if code == "payload_too_large":
                raise LambdaError(413, "RequestTooLargeException", err.get("message", ""))
            if code == "shutting_down":
                raise LambdaError(503, "ServiceException", "the server is shutting down; retry")
            payload = {
                "function_timeout": {"errorType": "Sandbox.Timedout",
                                     "errorMessage": f"RequestId: {rid} Error: Task timed out after {timeout:.2f} seconds"},
                "function_init_failed": {"errorType": err.get("errorType") or "Runtime.Unknown",
                                         "errorMessage": err.get("message", ""), "stackTrace": err.get("stackTrace", [])},
                "function_crashed": {"errorType": "Runtime.ExitError",
                                     "errorMessage": f"RequestId: {rid} Error: {err.get('message', '')}"},
                "function_oom": {"errorType": "Runtime.OutOfMemory",
                                 "errorMessage": f"RequestId: {rid} Error: {err.get('message', '')}"},
                "response_too_large": {"errorType": "Function.ResponseSizeTooLarge", "errorMessage": err.get("message", "")},
            }.get(code, {"errorType": "Runtime.Unknown", "errorMessage": err.get("message", code)})
            body = json.dumps(payload).encode()
            headers["X-Amz-Function-Error"] = "Unhandled"
        elif "x-polyfn-function-error" in hdrs:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if tail and out.activation_id:
            headers["X-Amz-Log-Result"] = await self.log_tail(out.activation_id, info, version)
        return Response(body, status_code=200, headers=headers, media_type="application/json")

    async def log_tail(self, activation_id: str, info: FunctionInfo, version: str = LATEST) -> str:
        """Base64 of the last 4 KB of the activation's log, framed as Lambda frames it."""
        await self.recorder.flush()
        act = await self.store.get_activation(activation_id)
        if act is None:
            return ""
        lines = [f"START RequestId: {act.id} Version: {version}"]
        lines += [ln.line for ln in act.logs]
        lines.append(f"END RequestId: {act.id}")
        report = (f"REPORT RequestId: {act.id}\tDuration: {act.run_ms:.2f} ms\t"
                  f"Billed Duration: {max(1, math.ceil(act.run_ms))} ms\tMemory Size: {info.spec.memory} MB")
        if act.max_memory_mb:
            report += f"\tMax Memory Used: {math.ceil(act.max_memory_mb)} MB"
        if act.cold:
            report += f"\tInit Duration: {act.init_ms:.2f} ms"
        lines.append(report)
        text = ("\n".join(lines) + "\n").encode()
        return base64.b64encode(text[-TAIL_BYTES:]).decode()


def _error_of(body: bytes) -> dict[str, Any]:
    try:
        e = jsontext.loads(body).get("error")
        return e if isinstance(e, dict) else {}
    except (ValueError, AttributeError):
        return {}


def _error_of_payload(body: bytes) -> tuple[str, str]:
    """(ErrorCode, ErrorDetails) of a function error payload (`errorType`, `errorMessage`)."""
    try:
        e = jsontext.loads(body)
    except ValueError:
        return "Unhandled", body.decode("utf-8", "replace")
    if not isinstance(e, dict):
        return "Unhandled", str(e)
    return str(e.get("errorType") or "Unhandled"), str(e.get("errorMessage") or "")


