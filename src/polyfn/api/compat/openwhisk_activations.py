"""OpenWhisk activations on the OpenWhisk API (beside openwhisk.py): the records as OpenWhisk shows them and
what a blocking invocation answers.

* `GET /api/v1/namespaces/_/activations[?name=&limit=&skip=&docs=]`, `…/activations/{id}`,
  `…/activations/{id}/logs|result`: the request namespace's activation records (an action's, or a trigger's,
  recorded as function `openwhisk:T`, openwhisk_events.py). An action's result `{"error": …}` is an application
  error (status code 1), an exception a developer error (2), anything else of polyfn's a whisk internal error (3).
* `blocking_result`: the HTTP status and result of a blocking invocation (`?blocking=true`, a web action).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from polyfn import jsontext
from polyfn.api.compat import common
from polyfn.api.compat.openwhisk_events import SINK, TRIGGER_ACTIVATION, WhiskEvents
from polyfn.api.compat.whisk_names import NAMESPACE, NS, WhiskError, paging, polyfn_name, to_openwhisk
from polyfn.invoker import Outcome
from polyfn.model import Activation, FunctionInfo
from polyfn.tenancy import DEFAULT, local, namespace_of, owns, qualify

if TYPE_CHECKING:
    from polyfn.services import Activations, FunctionStore


def activation_json(act: Activation, info_name: str, subject: str = "") -> dict[str, Any]:
    try:
        result = jsontext.loads(act.result) if act.result else {}
    except ValueError:
        result = {"result": act.result}
    if act.trigger == TRIGGER_ACTIVATION:  # a trigger's: its payload, a log line per rule, no duration
        name = act.function.partition(":")[2]
        return {"namespace": to_openwhisk(namespace_of(act.function)), "name": name, "version": f"0.0.{act.revision}",
                "subject": subject or NAMESPACE, "activationId": act.id, "start": int(act.start * 1000), "end": 0,
                "duration": 0, "statusCode": 0,
                "response": {"status": "success", "statusCode": 0, "success": True, "result": result},
                "logs": [ln.line for ln in act.logs], "annotations": [], "publish": False}
    base = local(info_name).rpartition("/")[2]
    if act.status == "error" and _application_error(act.error):
        status, code = "application error", 1
    elif act.status == "success":
        status, code = ("application error", 1) if isinstance(result, dict) and "error" in result else ("success", 0)
    elif act.status == "error" or act.status in ("timeout", "crashed", "oom", "init_failed"):
        status, code = "action developer error", 2
        err = act.error or {}
        result = {"error": err.get("errorMessage") or err.get("message") or act.status}
    else:
        status, code = "whisk internal error", 3
        result = {"error": (act.error or {}).get("message", act.status)}
    ns_name = to_openwhisk(namespace_of(info_name))
    annotations = [{"key": "path", "value": f"{ns_name}/{local(info_name)}"},
                   {"key": "waitTime", "value": round(act.wait_ms)}]
    if act.cold:
        annotations.append({"key": "initTime", "value": round(act.init_ms)})
    return {
        "namespace": ns_name, "name": base, "version": f"0.0.{act.revision}", "subject": subject or NAMESPACE,
        "activationId": act.id, "start": int(act.start * 1000), "end": int(act.end * 1000),
        "duration": round(act.duration_ms), "statusCode": code,
        "response": {"status": status, "statusCode": code, "success": code == 0, "result": result},
        "logs": [f"{_iso(ln.ts)} {ln.stream}: {ln.line}" for ln in act.logs],
        "annotations": annotations, "publish": False,
    }


def _application_error(error: dict[str, Any] | None) -> bool:
    """An `{"error": …}` result, as the openwhisk flavors report it (Python: errorType ApplicationError; Node.js:
    the result's `error` itself), not an exception."""
    return bool(error) and (error.get("errorType") == "ApplicationError"  # type: ignore[union-attr]
                            or ("error" in error and "errorType" not in error))  # type: ignore[operator]


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def blocking_result(out: Outcome, info: FunctionInfo) -> tuple[int, Any]:
    """(HTTP status, result) as OpenWhisk answers a blocking invocation."""
    hdrs = common.outcome_headers(out)
    code = hdrs.get("x-polyfn-error")
    try:
        body: Any = jsontext.loads(out.body) if out.body else {}
    except ValueError:
        body = {"result": out.body.decode("utf-8", "replace")}
    if code == "function_not_found":
        return 404, {"error": "The requested resource does not exist."}
    if code == "too_many_requests":
        return 429, {"error": "Too many concurrent requests in flight."}
    if code == "function_timeout":
        return 502, {"error": f"The action exceeded its time limits of {int(info.spec.timeout * 1000)} milliseconds."}
    if code is not None:
        return 502, {"error": (body.get("error") or {}).get("message", code) if isinstance(body, dict) else code}
    if "x-polyfn-function-error" in hdrs:
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, str) and err.startswith("An error has occurred: "):  # the flavor's developer error
            return 502, {"error": err}
        if err is not None and "stackTrace" not in body:  # an application error: the action's result as it is
            return 502, body
        msg = body.get("errorMessage") if isinstance(body, dict) else None
        return 502, {"error": f"An error has occurred: {msg or out.body.decode('utf-8', 'replace')}"}
    if isinstance(body, dict) and "error" in body:
        return 502, body
    return 200, body


class WhiskActivations:
    """The activation records of the request's namespace (`auth` checks the caller and sets it; the caller's key
    id is the records' `subject`)."""

    def __init__(self, store: FunctionStore, recorder: Activations, events: WhiskEvents,
                 auth: Callable[[Request], Awaitable[str]]):
        self.store = store
        self.recorder = recorder
        self.events = events  # whether a name is a trigger's
        self.auth = auth

    async def list_activations(self, request: Request, ns: str) -> Response:
        subject = await self.auth(request)
        skip, limit = paging(request)
        name = request.query_params.get("name")
        await self.recorder.flush()
        function = None
        if name:  # an action's, or a trigger's (recorded as `openwhisk:T`)
            function = qualify(NS.get(), polyfn_name(name) if await self.events.is_action(name) else f"{SINK}:{name}")
        acts = await self.store.list_activations(function=function, limit=skip + limit,
                                                 namespace=NS.get() if NS.get() != DEFAULT else None)
        docs = request.query_params.get("docs") == "true"
        out = []
        for a in acts[skip:]:
            rec = activation_json(a, a.function, subject)
            if not docs:
                rec.pop("logs")
                rec["response"].pop("result")
            out.append(rec)
        return JSONResponse(out)

    async def _activation(self, aid: str) -> Activation:
        await self.recorder.flush()
        act = await self.store.get_activation(aid)
        if act is None or not owns(NS.get(), act.function):
            raise WhiskError(404, "The requested resource does not exist.")
        return act

    async def get_activation(self, request: Request, ns: str, aid: str) -> Response:
        subject = await self.auth(request)
        act = await self._activation(aid)
        return JSONResponse(activation_json(act, act.function, subject))

    async def activation_logs(self, request: Request, ns: str, aid: str) -> Response:
        await self.auth(request)
        act = await self._activation(aid)
        return JSONResponse({"logs": activation_json(act, act.function)["logs"]})

    async def activation_result(self, request: Request, ns: str, aid: str) -> Response:
        await self.auth(request)
        act = await self._activation(aid)
        resp = activation_json(act, act.function)["response"]
        return JSONResponse({"result": resp["result"], "status": resp["status"], "success": resp["success"]})
