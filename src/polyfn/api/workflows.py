"""`/v1/workflows` and `/v1/executions`: polyfn's own face of the workflow service (the CLI's `polyfn workflow`,
the console, and an HTTP trigger for a state machine: `POST /v1/workflows/NAME/executions` with a key).

A definition is Amazon States Language (JSON, given as an object or as text); `kind: "sequence"` takes a list of
function names instead (`workflows/sequences.py`). Schedules (`"schedules": [{"cron": "*/5 * * * *"}]`) start
executions on a cron (`workflows/schedules.py`).

Namespaces: the request's namespace (`api/namespaces.py`) owns the workflows it names; another namespace's
workflow or execution is 404 `workflow_not_found` / `execution_not_found`, as an absent one.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request

from polyfn import jsontext
from polyfn.api.errors import ApiError
from polyfn.api.namespaces import request_namespace
from polyfn.api.routes import Route, mount
from polyfn.workflows import arns, sequences
from polyfn.workflows.definition import parse
from polyfn.workflows.service import WorkflowError
from polyfn.workflows.store import Execution, Machine

if TYPE_CHECKING:
    from polyfn.workflows.service import WorkflowService

_CODES = {
    "StateMachineDoesNotExist": (404, "workflow_not_found"), "ExecutionDoesNotExist": (404, "execution_not_found"),
    "StateMachineAlreadyExists": (409, "workflow_exists"), "ExecutionAlreadyExists": (409, "execution_exists"),
    "InvalidDefinition": (400, "invalid_definition"), "InvalidName": (400, "invalid_name"),
    "InvalidExecutionInput": (400, "invalid_input"), "StateMachineTypeNotSupported": (400, "invalid_type"),
}
_FIELDS = {"name", "definition", "type", "kind", "role_arn", "schedules", "description"}


def api_error(e: WorkflowError) -> ApiError:
    status, code = _CODES.get(e.code, (400, "invalid_request"))
    return ApiError(status, code, e.message)


def machine_json(m: Machine, **extra: Any) -> dict[str, Any]:
    out = {"name": m.name, "arn": arns.machine_arn(m.name, namespace=m.namespace), "kind": m.meta.get("kind", m.kind), "type": m.type,
           "revision": m.revision, "definition": json.loads(m.definition), "role_arn": m.role_arn,
           "schedules": m.meta.get("schedules", []), "created_at": m.created_at, "updated_at": m.updated_at}
    if m.meta.get("sequence"):
        out["components"] = m.meta["sequence"]
    out.update(extra)
    return out


def execution_json(ex: Execution) -> dict[str, Any]:
    return {"id": ex.id, "name": ex.name, "workflow": ex.machine, "arn": arns.execution_arn(ex.machine, ex.name, namespace=ex.namespace),
            "status": ex.status, "input": json.loads(ex.input), "output": json.loads(ex.output) if ex.output else None,
            "error": ex.error, "cause": ex.cause, "started_at": ex.started_at, "stopped_at": ex.stopped_at,
            "revision": ex.revision}


def graph(text: str) -> dict[str, Any]:
    """Nodes and edges of a definition (nested machines flattened with their location), for drawing."""
    m = parse(text)
    nodes, edges = [], []
    for loc, st in m.walk():
        prefix = loc.rsplit("/States/", 1)[0]
        nodes.append({"id": loc, "name": st.name, "type": st.type, "parent": prefix or None,
                      "start": st.name == _start_of(m, prefix), "end": st.end or st.type in ("Succeed", "Fail")})
        for field, target in st.transitions():
            edges.append({"from": loc, "to": f"{prefix}/States/{target}", "label": field})
    return {"nodes": nodes, "edges": edges}


def _start_of(m: Any, prefix: str) -> str:
    node = m
    parts = [p for p in prefix.split("/") if p]
    i = 0
    while i < len(parts):
        st = node.states[parts[i + 1]]
        if parts[i + 2] == "Branches":
            node = st.branches[int(parts[i + 3])]
            i += 4
        else:
            node = st.processor
            i += 3
    return str(node.start_at)


def _definition_text(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ASL text of a request's definition, and the meta to keep (sequence components, schedules)."""
    meta: dict[str, Any] = {}
    kind = body.get("kind", "asl")
    if kind == "sequence":
        components = body.get("definition")
        try:
            text = sequences.sequence_definition(components)
        except ValueError as e:
            raise ApiError(400, "invalid_definition", str(e)) from None
        meta.update(kind="sequence", sequence=components)
    elif kind == "asl":
        d = body.get("definition")
        if d is None:
            raise ApiError(400, "invalid_definition", "a workflow needs a `definition` (Amazon States Language)")
        text = d if isinstance(d, str) else json.dumps(d)
    else:
        raise ApiError(400, "invalid_request", f"kind={kind!r}: use asl or sequence")
    if "schedules" in body:
        from polyfn.workflows.schedules import validate

        try:
            meta["schedules"] = validate(body["schedules"])
        except ValueError as e:
            raise ApiError(400, "invalid_schedule", str(e)) from None
    return text, meta


class WorkflowRoutes:
    def __init__(self, *, workflows: WorkflowService | None):
        self.workflows = workflows

    def _svc(self) -> Any:
        if self.workflows is None:
            raise ApiError(503, "unavailable", "the workflow service is not running")
        return self.workflows

    async def _body_of(self, request: Request) -> dict[str, Any]:
        try:
            body = jsontext.loads_text(await request.body() or b"{}")
        except ValueError:
            raise ApiError(400, "invalid_json", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        return body

    async def list_workflows(self, request: Request) -> dict[str, Any]:
        return {"workflows": [machine_json(m) for m in await self._svc().list_machines(request_namespace(request))]}

    async def create_workflow(self, request: Request) -> dict[str, Any]:
        return await self._put(await self._body_of(request), None, create=True, ns=request_namespace(request))

    async def put_workflow(self, name: str, request: Request) -> dict[str, Any]:
        return await self._put(await self._body_of(request), name, create=False, ns=request_namespace(request))

    async def _put(self, body: dict[str, Any], name: str | None, create: bool, ns: str) -> dict[str, Any]:
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise ApiError(400, "invalid_request", f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})")
        name = name or body.get("name")
        if not isinstance(name, str):
            raise ApiError(400, "invalid_name", "a workflow needs a `name`")
        for field in ("role_arn", "type", "description"):
            if field in body and not isinstance(body[field], str):
                raise ApiError(400, "invalid_request", f"`{field}` must be a string")
        text, meta = _definition_text(body)
        s = self._svc()
        try:
            exists = await s.store.get_machine(ns, name) is not None
            if exists and not create:
                m = await s.update_machine(name, text, body.get("role_arn"), namespace=ns, meta=meta)
            else:
                m = await s.create_machine(name, text, body.get("role_arn", ""), body.get("type", "STANDARD"),
                                           namespace=ns, meta=meta)
        except WorkflowError as e:
            raise api_error(e) from None
        return machine_json(m)

    async def get_workflow(self, name: str, request: Request,
                           executions: Annotated[int, Query(ge=0, le=1000)] = 20) -> dict[str, Any]:
        ns = request_namespace(request)
        try:
            m = await self._svc().machine(name, ns)
        except WorkflowError as e:
            raise api_error(e) from None
        recent = await self._svc().list_executions(name, None, executions, namespace=ns) if executions else []
        return machine_json(m, graph=graph(m.definition), executions=[execution_json(e) for e in recent])

    async def delete_workflow(self, name: str, request: Request) -> dict[str, Any]:
        if not await self._svc().delete_machine(name, request_namespace(request)):
            raise ApiError(404, "workflow_not_found", f"workflow {name!r} does not exist")
        return {"deleted": name}

    async def start(self, name: str, request: Request, wait: bool = False,
                    timeout: Annotated[float, Query(gt=0, le=3600)] = 300) -> dict[str, Any]:
        body = await self._body_of(request)
        value = body.get("input", {})
        if body.get("name") is not None and not isinstance(body["name"], str):
            raise ApiError(400, "invalid_name", "`name` must be a string")
        ns = request_namespace(request)
        try:
            if wait:
                ex = await self._svc().run_sync(name, body.get("name"), json.dumps(value), ns, timeout=timeout)
            else:
                ex = await self._svc().start_execution(name, body.get("name"), json.dumps(value), ns)
        except WorkflowError as e:
            raise api_error(e) from None
        return execution_json(ex)

    async def list_executions(self, name: str, request: Request, status: str | None = None,
                              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        ns = request_namespace(request)
        try:
            exs = await self._svc().list_executions(name, status, limit, namespace=ns)
        except WorkflowError as e:
            raise api_error(e) from None
        return {"executions": [execution_json(e) for e in exs]}

    async def _one(self, execution_id: str, request: Request) -> Execution:
        try:
            return await self._svc().execution(execution_id, request_namespace(request))  # type: ignore[no-any-return]
        except WorkflowError as e:
            raise api_error(e) from None

    async def get_execution(self, execution_id: str, request: Request) -> dict[str, Any]:
        return execution_json(await self._one(execution_id, request))

    async def history(self, execution_id: str, request: Request, after: int = 0,
                      limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
        ex = await self._one(execution_id, request)
        return {"events": await self._svc().history(ex.id, after, limit)}

    async def stop(self, execution_id: str, request: Request) -> dict[str, Any]:
        body = await self._body_of(request)
        if any(body.get(k) is not None and not isinstance(body[k], str) for k in ("error", "cause")):
            raise ApiError(400, "invalid_request", "`error` and `cause` must be strings")
        try:
            ex = await self._svc().stop_execution(await self._one(execution_id, request), body.get("error"),
                                                  body.get("cause"))
        except WorkflowError as e:
            raise api_error(e) from None
        return execution_json(ex)


WORKFLOWS = (
    Route("GET",    "/workflows",                         WorkflowRoutes.list_workflows,
          {"summary": "List state machines"}),
    Route("POST",   "/workflows",                         WorkflowRoutes.create_workflow,
          {"status_code": 201, "summary": "Create a state machine (ASL, or kind=sequence)"}),
    Route("PUT",    "/workflows/{name}",                  WorkflowRoutes.put_workflow,
          {"summary": "Create or update a state machine"}),
    Route("GET",    "/workflows/{name}",                  WorkflowRoutes.get_workflow,
          {"summary": "A state machine, its graph and its latest executions"}),
    Route("DELETE", "/workflows/{name}",                  WorkflowRoutes.delete_workflow,
          {"summary": "Delete a state machine (running executions finish)"}),
    Route("POST",   "/workflows/{name}/executions",       WorkflowRoutes.start,
          {"status_code": 201, "summary": "Start an execution (wait=true: until it ends)"}),
    Route("GET",    "/workflows/{name}/executions",       WorkflowRoutes.list_executions,
          {"summary": "A state machine's executions, newest first"}),
    Route("GET",    "/executions/{execution_id}",         WorkflowRoutes.get_execution,
          {"summary": "An execution"}),
    Route("GET",    "/executions/{execution_id}/history", WorkflowRoutes.history,
          {"summary": "An execution's history events"}),
    Route("POST",   "/executions/{execution_id}/stop",    WorkflowRoutes.stop,
          {"summary": "Stop a running execution"}),
)


def router(workflows: WorkflowService | None) -> APIRouter:
    r = APIRouter(tags=["workflows"])
    mount(r, WORKFLOWS, WorkflowRoutes(workflows=workflows))
    return r
