"""The Lambda durable-execution control plane (API version 2025-12-01), beside the Lambda API (lambda_api.py).

What AWS's durable execution SDKs (`aws-durable-execution-sdk-python`, `@aws/durable-execution-sdk-js`) call from
inside a function through the Lambda client — `CheckpointDurableExecution`, `GetDurableExecutionState` — and what
callers use: `SendDurableExecutionCallbackSuccess/Failure/Heartbeat`, `GetDurableExecution`,
`GetDurableExecutionHistory`, `ListDurableExecutionsByFunction`, `StopDurableExecution`. A function is durable
when it was created with `DurableConfig` (or has the `aws.lambda/durable` annotation); invoking it (`Invoke`,
optionally with `X-Amz-Durable-Execution-Name`) starts a durable execution, run by `workflows/durable.py` on the
workflow engine: the function is invoked with the durable invocation input and invoked again to resume after a
wait, a retry delay, a callback or a chained invoke.

Timestamps are epoch seconds on this REST-JSON wire (the SDK's invocation input carries milliseconds).

Namespaces: a durable execution belongs to its function's namespace (its machine is the function's held name,
`team-a~hello`); a key of another namespace gets exactly what an unknown execution or callback gets
(`ResourceNotFoundException`), and `ListDurableExecutionsByFunction` names functions in the key's namespace.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from polyfn import jsontext
from polyfn.api.compat import lambda_wire as lam
from polyfn.api.compat.lambda_wire import durable_config
from polyfn.api.routes import Route, mount
from polyfn.auth.keys import allows
from polyfn.tenancy import DEFAULT, account_id, key_may, key_namespace, local, qualify
from polyfn.workflows.checkpoints import MAX_RESULT, error_problem
from polyfn.workflows.durable import CheckpointRefused
from polyfn.workflows.service import DURABLE_NAMESPACE, WorkflowError
from polyfn.workflows.store import Execution

if TYPE_CHECKING:
    from polyfn.api.compat.lambda_wire import Target

P = "/2025-12-01"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a DurableExecutionName, as AWS's API reference has it
_STATUS = {"ABORTED": "STOPPED"}  # polyfn's execution status → the durable API's
_TIMESTAMPS = (("StartTimestamp",), ("EndTimestamp",), ("StepDetails", "NextAttemptTimestamp"),
               ("WaitDetails", "ScheduledEndTimestamp"))


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(obj), status_code=status, media_type="application/json", headers=headers)


def wire_operation(op: dict[str, Any]) -> dict[str, Any]:
    """An operation as the API sends it: timestamps in seconds (a copy: only the dicts holding one are copied)."""
    out = dict(op)
    for path in _TIMESTAMPS:
        node = out
        for k in path[:-1]:
            inner = node.get(k)
            if not isinstance(inner, dict):
                break
            node[k] = node = dict(inner)
        else:
            if isinstance(node.get(path[-1]), (int, float)):
                node[path[-1]] = node[path[-1]] / 1000
    return out


def _error(e: WorkflowError) -> lam.LambdaError:
    if e.code in ("ResourceNotFoundException", "ExecutionDoesNotExist", "TaskDoesNotExist"):
        return lam.LambdaError(404, "ResourceNotFoundException", e.message)
    if e.code == "TaskTimedOut":
        return lam.LambdaError(400, "CallbackTimeoutException", e.message)
    return lam.LambdaError(400, "InvalidParameterValueException", e.message)


class DurableApi:
    def __init__(self, verify: Callable[..., Awaitable[Any]], workflows: Any):
        self.verify = verify  # LambdaFace.auth: SigV4, then the key's scope
        self.workflows = workflows

    @property
    def service(self) -> Any:
        svc = self.workflows
        if svc is None:
            raise lam.LambdaError(503, "ServiceException", "the workflow service is not running")
        return svc

    async def auth(self, request: Request, scope: str, function: str | None, what: str = "") -> bytes:
        """Verify the request; its key must have `scope` on `function` (a held name). A function of a namespace
        the key may not reach: `what` is not found (404, as an unknown one), not refused."""
        ok, body = await self.verify(request)
        key = ok.key
        if key is not None and not key_may(key, function):
            raise lam.LambdaError(404, "ResourceNotFoundException", f"{what or 'Resource'} not found")
        if key is None or not allows(key, scope, function):
            raise lam.LambdaError(403, "AccessDeniedException", f"User: {ok.access_key_id} is not authorized to perform this "
                              f"durable execution operation (it needs scope {scope!r}"
                              + (f" on function {function!r})" if function else ")"))
        return body

    async def execution(self, durable_arn: str) -> Execution:
        key = durable_arn.rstrip("/").rsplit("/", 1)[-1]
        ex = await self.service.engine.current(key)  # (a running execution: from the engine's cache, no read)
        if ex is None or ex.kind != "durable":
            raise lam.LambdaError(404, "ResourceNotFoundException", f"Durable execution not found: {durable_arn}")
        return ex

    # -- starting: Invoke of a durable function -------------------------------------------------------

    async def invoke(self, request: Request, t: Target, body: bytes, kind: str, rid: str) -> Response:
        info = t.info
        cfg = durable_config(info.spec.annotations) or {}
        lname = info.spec.annotations.get(lam.A_NAME, local(info.name))
        function_arn = f"{lam.arn('us-east-1', lname)}:{t.version}"
        name = request.headers.get("x-amz-durable-execution-name") or None
        if name is not None and not _NAME.fullmatch(name):  # (a "/" in it made an ARN the SDK reads wrongly)
            raise lam.LambdaError(400, "InvalidParameterValueException", "DurableExecutionName must be 1 to 64 "
                                  "letters, digits, '-' or '_'")
        try:
            ex, started = await self.service.start_durable(info.name, function_arn, name, body.decode() or "{}",
                                                           cfg.get("ExecutionTimeout"))
        except WorkflowError as e:
            raise _error(e) from None
        durable_arn = json.loads(ex.state).get("arn", "") if ex.state else ""
        headers = {"x-amzn-RequestId": rid, "X-Amz-Durable-Execution-Arn": durable_arn, "X-Amz-Executed-Version": t.version}
        if not started:
            raise lam.LambdaError(409, "DurableExecutionAlreadyStartedException",
                              f"The durable execution {name!r} of this function has already been started",
                              {"X-Amz-Durable-Execution-Arn": durable_arn})
        if kind == "Event":
            return Response(status_code=202, headers=headers)
        done = await self.service.engine.wait(ex.id, max(900.0, info.spec.timeout))
        if done is None or done.status == "RUNNING":
            raise lam.LambdaError(500, "ServiceException", f"the durable execution {durable_arn} is still running; follow it "
                              "with GetDurableExecution", headers)
        if done.status == "SUCCEEDED":
            return Response(done.output or "null", status_code=200, media_type="application/json", headers=headers)
        payload = {"errorType": done.error or "Execution.Failed", "errorMessage": done.cause or ""}
        return Response(json.dumps(payload), status_code=200, media_type="application/json",
                        headers={**headers, "X-Amz-Function-Error": "Unhandled"})

    # -- the SDK's calls ------------------------------------------------------------------------------

    async def checkpoint(self, request: Request, durable_arn: str) -> Response:
        ex = await self.execution(durable_arn)
        body = await self.auth(request, "invoke", ex.machine, f"Durable execution {durable_arn}")
        req = _body_json(body)
        if not isinstance(req.get("Updates") or [], list) or not isinstance(req.get("CheckpointToken"), str) \
                or not req["CheckpointToken"]:
            raise lam.LambdaError(400, "InvalidParameterValueException", "CheckpointToken and a list of Updates are required")
        try:
            out = await self.service.durable_event(ex.id, {"type": "checkpoint", "token": req["CheckpointToken"],
                                                           "updates": req.get("Updates") or []})
        except CheckpointRefused as e:
            raise lam.LambdaError(400, "InvalidParameterValueException", str(e)) from None
        except WorkflowError as e:
            raise _error(e) from None
        reply = out.reply or {"NewExecutionState": {"Operations": []}}
        reply["NewExecutionState"]["Operations"] = [wire_operation(o) for o in reply["NewExecutionState"]["Operations"]]
        return _json(reply)

    async def state(self, request: Request, durable_arn: str) -> Response:
        ex = await self.execution(durable_arn)
        await self.auth(request, "invoke", ex.machine, f"Durable execution {durable_arn}")
        ops = await _operations(self.service.store, ex)
        try:
            start = _count(request.query_params.get("Marker"), 0)
            size = _count(request.query_params.get("MaxItems"), 1000)
        except ValueError:
            raise lam.LambdaError(400, "InvalidParameterValueException", "Marker and MaxItems must be integers") from None
        page = ops[start:start + max(1, min(size, 1000))]
        out: dict[str, Any] = {"Operations": [wire_operation(o) for o in page]}
        if start + len(page) < len(ops):
            out["NextMarker"] = str(start + len(page))
        return _json(out)

    # -- callbacks ------------------------------------------------------------------------------------

    async def callback(self, request: Request, callback_id: str, verb: str) -> Response:
        execution_id = callback_id.split(".", 1)[0]
        ex = await self.service.engine.current(execution_id)
        unknown = lam.LambdaError(404, "ResourceNotFoundException", f"Callback {callback_id!r} is unknown or no "
                                  "longer waits (answered, timed out, or its execution ended)")
        ok, body = await self.verify(request)
        if ok.key is not None and ex is not None and not key_may(ok.key, ex.machine):
            raise unknown  # another namespace's callback: as an unknown one
        if ok.key is None or not allows(ok.key, "invoke", None):
            raise lam.LambdaError(403, "AccessDeniedException", f"User: {ok.access_key_id} is not authorized to "
                                  "perform this durable execution operation (it needs scope 'invoke')")
        if verb == "succeed":
            if len(body) > MAX_RESULT:  # (kept in the operation, handed to every replay after)
                raise lam.LambdaError(400, "InvalidParameterValueException", f"the callback's Result is {len(body)} "
                                      f"bytes; the limit is {MAX_RESULT}")
            event: dict[str, Any] = {"type": "callback", "ok": True, "result": _text(body)}
        elif verb == "fail":
            event = {"type": "callback", "ok": False, "error": _error_body(body)}
        else:
            event = {"type": "callback_heartbeat"}
        try:
            out = await self.service.durable_event(execution_id, {**event, "callback_id": callback_id})
        except WorkflowError:
            out = None
        if out is None or (not out.accepted and out.reply):
            raise unknown
        if not out.accepted:
            raise lam.LambdaError(400, "CallbackTimeoutException", unknown.message)
        return _json({})

    async def succeed(self, request: Request, callback_id: str) -> Response:
        return await self.callback(request, callback_id, "succeed")

    async def fail(self, request: Request, callback_id: str) -> Response:
        return await self.callback(request, callback_id, "fail")

    async def heartbeat(self, request: Request, callback_id: str) -> Response:
        return await self.callback(request, callback_id, "heartbeat")

    # -- reading and stopping -------------------------------------------------------------------------

    async def get(self, request: Request, durable_arn: str) -> Response:
        ex = await self.execution(durable_arn)
        await self.auth(request, "read", ex.machine, f"Durable execution {durable_arn}")
        return _json(self.describe(ex, request.query_params.get("IncludeExecutionData", "true") != "false"))

    def describe(self, ex: Execution, data: bool = True) -> dict[str, Any]:
        state = json.loads(ex.state) if ex.state else {}
        out: dict[str, Any] = {"DurableExecutionArn": state.get("arn", ""), "DurableExecutionName": ex.name,
                               "FunctionArn": state.get("arn", "").split("/durable-execution/", 1)[0],
                               "StartTimestamp": ex.started_at, "Status": _STATUS.get(ex.status, ex.status),
                               "Version": "$LATEST"}
        if ex.stopped_at:
            out["EndTimestamp"] = ex.stopped_at
        if data:
            out["InputPayload"] = ex.input
            if ex.output is not None:
                out["Result"] = ex.output
        if ex.status in ("FAILED", "TIMED_OUT", "ABORTED") and (ex.error or ex.cause):
            out["Error"] = {"ErrorType": ex.error, "ErrorMessage": ex.cause}
        return out

    async def history(self, request: Request, durable_arn: str) -> Response:
        ex = await self.execution(durable_arn)
        await self.auth(request, "read", ex.machine, f"Durable execution {durable_arn}")
        q = request.query_params
        try:
            after = _count(q.get("Marker"), 0)
            size = max(1, min(_count(q.get("MaxItems"), 1000), 1000))
        except ValueError:
            raise lam.LambdaError(400, "InvalidParameterValueException", "Marker and MaxItems must be integers") from None
        reverse = q.get("ReverseOrder", "false") == "true"
        evs = await self.service.history(ex.id, after, size + 1, reverse)
        out: dict[str, Any] = {"Events": [_event(e) for e in evs[:size]]}
        if len(evs) > size:
            out["NextMarker"] = str(evs[size - 1]["id"])
        return _json(out)

    async def stop(self, request: Request, durable_arn: str) -> Response:
        ex = await self.execution(durable_arn)
        body = await self.auth(request, "invoke", ex.machine, f"Durable execution {durable_arn}")
        err = _error_body(body)
        if ex.status == "RUNNING":
            await self.service.durable_event(ex.id, {"type": "stop", "error": err})
            ex = await self.service.execution(ex.id)
        return _json({"StopTimestamp": ex.stopped_at or 0})

    async def list_by_function(self, request: Request, function_name: str) -> Response:
        ok, _body = await self.verify(request)  # (the function is named in the key's namespace)
        ns = key_namespace(ok.key) or DEFAULT if ok.key is not None else DEFAULT
        pname = qualify(ns, lam.polyfn_name(lam.parse_function_name(function_name)[0]))
        await self.auth(request, "read", pname)
        if lam.arn_account(function_name) not in (None, account_id(ns)):
            return _json({"DurableExecutions": []})  # another account's function: listed as an absent one is
        q = request.query_params
        statuses = set(q.getlist("Statuses"))
        try:
            size = max(1, min(int(q.get("MaxItems") or 100), 1000))
            before = _marker(q["Marker"]) if q.get("Marker") else None
        except (ValueError, binascii.Error):
            raise lam.LambdaError(400, "InvalidParameterValueException", "Marker is not one polyfn returned") from None
        exs = await self.service.list_executions(pname, None, size + 1, tuple(before) if before else None,
                                                 namespace=DURABLE_NAMESPACE)
        if q.get("DurableExecutionName"):
            exs = [e for e in exs if e.name == q["DurableExecutionName"]]
        if statuses:
            exs = [e for e in exs if _STATUS.get(e.status, e.status) in statuses]
        items = [{k: v for k, v in self.describe(e, data=False).items() if k in (
            "DurableExecutionArn", "DurableExecutionName", "FunctionArn", "Status", "StartTimestamp", "EndTimestamp")}
            for e in exs[:size]]
        out: dict[str, Any] = {"DurableExecutions": items}
        if len(exs) > size:
            last = exs[size - 1]
            out["NextMarker"] = base64.urlsafe_b64encode(json.dumps([last.started_at, last.id]).encode()).decode()
        return _json(out)


def _count(text: str | None, default: int) -> int:
    """A Marker or MaxItems of a query: a whole number from 0 up (a negative one paged backwards; one no
    database column holds was a 500 from the store), or ValueError."""
    n = int(text) if text else default
    if not 0 <= n < 2**62:
        raise ValueError("out of range")
    return n


def _error_body(body: bytes) -> dict[str, Any]:
    """The `ErrorObject` a callback's failure or a stop sends (an Error of other types was stored, then
    broke the history that shows it)."""
    err = _body_json(body) if body else {}
    problem = error_problem(err)
    if problem:
        raise lam.LambdaError(400, "InvalidParameterValueException", problem)
    return err


def _marker(text: str) -> list[Any]:
    """A page marker polyfn wrote (`[started_at, execution id]`), or ValueError: any other (a list of another shape,
    a number no database column holds, a lone surrogate) was a 500 from the store."""
    out = jsontext.loads_text(base64.urlsafe_b64decode(text))
    if (not isinstance(out, list) or len(out) != 2 or not isinstance(out[0], int | float) or isinstance(out[0], bool)
            or not isinstance(out[1], str) or not -2**62 < out[0] < 2**62):
        raise ValueError("not a marker")
    return out


async def _operations(store: Any, ex: Execution) -> list[dict[str, Any]]:
    state = json.loads(ex.state) if ex.state else {}
    if "ops" in state:  # (stored before operations had rows of their own)
        return [state["ops"][i] for i in state.get("order", [])]
    return [json.loads(b) for b in await store.get_ops(ex.id)]


def _event(e: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in e.items() if k not in ("id", "type", "timestamp")}
    out.update(EventId=e["id"], EventType=e["type"], EventTimestamp=e["timestamp"])
    return out


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        out = jsontext.loads_text(body or b"{}")  # (nested too deeply or a lone surrogate: malformed too)
    except ValueError:
        raise lam.LambdaError(400, "InvalidRequestContentException", "the request body is not JSON") from None
    if not isinstance(out, dict):
        raise lam.LambdaError(400, "InvalidRequestContentException", "the request body must be a JSON object")
    return out


class CheckpointFastPath:
    """ASGI middleware in front of the API's router: `CheckpointDurableExecution`, which a durable function calls
    at every step, goes straight to `DurableApi.checkpoint` instead of through the matching of the API's several
    hundred routes (which cost about as much as the checkpoint itself); every other request pays one prefix
    test. Same handler, same errors as the route below."""

    PREFIX = P + "/durable-executions/"
    SUFFIX = "/checkpoint"

    def __init__(self, app: Any, durable: Callable[[], DurableApi | None]):
        self.app = app
        self.durable = durable

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope.get("path", "")
        d = self.durable()
        if (d is None or scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(self.PREFIX)
                or not path.endswith(self.SUFFIX) or len(path) <= len(self.PREFIX) + len(self.SUFFIX)):
            await self.app(scope, receive, send)
            return
        try:
            response = await d.checkpoint(Request(scope, receive), path[len(self.PREFIX):-len(self.SUFFIX)])
        except lam.LambdaError as e:
            response = lam.error_response(e)
        await response(scope, receive, send)


#: Lambda's durable-execution routes (under the Lambda API's prefix `P`)
DURABLE = (
    Route("POST", P + "/durable-executions/{durable_arn:path}/checkpoint",    DurableApi.checkpoint),
    Route("GET",  P + "/durable-executions/{durable_arn:path}/state",         DurableApi.state),
    Route("GET",  P + "/durable-executions/{durable_arn:path}/history",       DurableApi.history),
    Route("POST", P + "/durable-executions/{durable_arn:path}/stop",          DurableApi.stop),
    Route("GET",  P + "/durable-executions/{durable_arn:path}",               DurableApi.get),
    Route("POST", P + "/durable-execution-callbacks/{callback_id}/succeed",   DurableApi.succeed),
    Route("POST", P + "/durable-execution-callbacks/{callback_id}/fail",      DurableApi.fail),
    Route("POST", P + "/durable-execution-callbacks/{callback_id}/heartbeat", DurableApi.heartbeat),
    Route("GET",  P + "/functions/{function_name}/durable-executions",        DurableApi.list_by_function),
)


def install(r: APIRouter, auth: Callable[..., Awaitable[Any]], workflows: Any) -> DurableApi:
    d = DurableApi(auth, workflows)
    mount(r, DURABLE, d)
    return d
