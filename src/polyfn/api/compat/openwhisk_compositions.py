"""OpenWhisk sequences and conductor actions on the OpenWhisk API (beside openwhisk.py), run by the workflow service.

* `PUT /api/v1/namespaces/_/actions/S` with `exec: {kind: "sequence", components: ["/_/a", "/_/b"]}` (what
  `wsk action create S --sequence a,b` sends) makes a workflow of kind `sequence` (`workflows/sequences.py`);
  the action shows with `exec.kind == "sequence"` and its `components`, and invoking it runs the chain.
* An action annotated `conductor: true` runs as a conductor loop when invoked.

A blocking invocation waits for the composition's end and answers like an activation (`result=true`: the result
only); a non-blocking one answers 202 with the execution's id as `activationId`.

Namespaces: a composition is a workflow of the request's namespace (`namespace()`, the OpenWhisk face's), its
components that namespace's actions (named by local names, so the engine runs them in the machine's namespace).
A component path names its namespace as OpenWhisk's do (`/_/a`, `a` and `pkg/a`: the request's; `/NS/a`,
`/NS/pkg/a`: NS's, `polyfn` and `guest` being the default namespace): another namespace's action — whether it
exists or not, whoever asks — is refused 403 as OpenWhisk refuses a component the caller is not entitled to
("The supplied authentication is not authorized to access …"); polyfn runs no composition across namespaces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, Response

from polyfn.api.compat.whisk_names import A_ANN, WhiskError, polyfn_name, to_openwhisk, to_polyfn
from polyfn.api.compat.whisk_names import annotation as _ann
from polyfn.tenancy import DEFAULT, local, qualify
from polyfn.workflows import sequences
from polyfn.workflows.service import WorkflowError
from polyfn.workflows.store import Execution, Machine

if TYPE_CHECKING:
    from polyfn.model import FunctionInfo
    from polyfn.services import FunctionStore

BLOCKING_TIMEOUT = 60.0  # seconds a blocking invocation waits (OpenWhisk's default), then it answers 202
NAMESPACE = DEFAULT


ow_namespace = to_openwhisk


def component_name(ref: str) -> str:
    """`/_/a`, `/guest/a`, `a`, `/ns/pkg/a` → the OpenWhisk action name (`a`, `pkg/a`)."""
    parts = [p for p in ref.split("/") if p]
    return "/".join(parts[1:]) if ref.startswith("/") and len(parts) > 1 else "/".join(parts)


def component_ref(ref: str, own: str) -> tuple[str, str]:
    """(the polyfn namespace, the OpenWhisk action name) a sequence component names, the request acting in `own`:
    `/_/a`, `a`, `pkg/a` are `own`'s; `/NS/a`, `/NS/pkg/a` NS's (`polyfn`, `guest`: the default namespace)."""
    parts = [p for p in ref.split("/") if p]
    if not ref.startswith("/") or len(parts) < 2 or parts[0] == "_":
        return own, component_name(ref)
    return (DEFAULT if parts[0] == "guest" else to_polyfn(parts[0])), "/".join(parts[1:])


class Compositions:
    def __init__(self, store: FunctionStore, workflows: Any, namespace: Callable[[], str] = lambda: DEFAULT):
        self.store = store
        self.workflows = workflows  # the workflow service (None: compositions answer 503)
        self.namespace = namespace  # the polyfn namespace of the request (the OpenWhisk face's)

    @property
    def service(self) -> Any:
        svc = self.workflows
        if svc is None:
            raise WhiskError(503, "the workflow service is not running")
        return svc

    async def find(self, name: str) -> Machine | None:
        if self.workflows is None:
            return None
        m = await self.service.store.get_machine(self.namespace(), polyfn_name(name))
        return m if m is not None and m.meta.get("kind") == "sequence" and m.meta.get("ow_name") == name else None

    async def all(self) -> list[Machine]:
        if self.workflows is None:
            return []
        return [m for m in await self.service.list_machines(self.namespace())
                if m.meta.get("kind") == "sequence" and m.meta.get("ow_name")]

    @staticmethod
    def action_json(m: Machine) -> dict[str, Any]:
        return {"namespace": ow_namespace(m.namespace), "name": m.meta["ow_name"], "version": f"0.0.{m.revision}",
                "exec": {"kind": "sequence", "components": m.meta.get("ow_components", [])},
                "annotations": [{"key": "exec", "value": "sequence"}], "parameters": [],
                "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}, "publish": False,
                "updated": int(m.updated_at * 1000)}

    async def put(self, name: str, body: dict[str, Any], overwrite: bool) -> Response:
        components = (body.get("exec") or {}).get("components")
        if not isinstance(components, list) or not components:
            raise WhiskError(400, "The request content was malformed: a sequence needs exec.components")
        functions = []
        ns = self.namespace()
        for ref in components:
            where, action = component_ref(str(ref), ns)
            if where != ns:  # (answered before any lookup: the same for an absent namespace or action)
                raise WhiskError(403, "The supplied authentication is not authorized to access "
                                 f"'{to_openwhisk(where)}/{action}'.")
            info = await self.store.get_function(qualify(ns, polyfn_name(action)))
            if info is None:
                raise WhiskError(400, f"Sequence component does not exist: {ref}")
            functions.append(local(info.name))  # (the engine runs a machine's Tasks in its own namespace)
        pname = polyfn_name(name)
        existing = await self.service.store.get_machine(ns, pname)
        if existing is not None and not overwrite:
            raise WhiskError(409, "resource already exists")
        if await self.store.get_function(qualify(ns, pname)) is not None:
            raise WhiskError(409, f"an action {name!r} that is not a sequence exists already")
        meta = {"kind": "sequence", "sequence": functions, "ow_name": name, "ow_components": components}
        try:
            text = sequences.sequence_definition(functions)
            if existing is not None:
                m = await self.service.update_machine(pname, text, namespace=ns, meta=meta)
            else:
                m = await self.service.create_machine(pname, text, namespace=ns, meta=meta)
        except (ValueError, WorkflowError) as e:
            raise WhiskError(400, getattr(e, "message", str(e))) from None
        return JSONResponse(self.action_json(m))

    async def delete(self, m: Machine) -> Response:
        await self.service.delete_machine(m.name, m.namespace)
        return JSONResponse(self.action_json(m))

    # -- invocation -----------------------------------------------------------------------------------

    @staticmethod
    def is_conductor(info: FunctionInfo) -> bool:
        return any(isinstance(x, dict) and x.get("key") == "conductor" and x.get("value") in (True, "true")
                   for x in _ann(info, A_ANN, []))

    async def invoke(self, machine: str, shown: str, params: dict[str, Any], blocking: bool, result_only: bool) -> Response:
        svc = self.service
        try:
            ex = await svc.start_execution(machine, None, json.dumps(params), self.namespace())
        except WorkflowError as e:
            raise WhiskError(400, e.message) from None
        if not blocking:
            return JSONResponse({"activationId": ex.id}, status_code=202)
        done = await svc.engine.wait(ex.id, BLOCKING_TIMEOUT)
        if done is None:
            return JSONResponse({"activationId": ex.id}, status_code=202)
        ok = done.status == "SUCCEEDED"
        result = json.loads(done.output) if ok and done.output else {"error": done.cause or done.error or done.status}
        if result_only:
            return JSONResponse(result, status_code=200 if ok else 502)
        return JSONResponse(_record(done, shown, result, ok), status_code=200 if ok else 502)

    async def invoke_conductor(self, info: FunctionInfo, shown: str, params: dict[str, Any], blocking: bool,
                               result_only: bool) -> Response:
        fn, ns = local(info.name), self.namespace()
        name = f"conductor-{fn}"[:80]
        try:
            await self.service.create_machine(name, sequences.conductor_definition(fn), namespace=ns,
                                              meta={"kind": "conductor"})
        except WorkflowError as e:
            if e.code != "StateMachineAlreadyExists":
                raise WhiskError(400, e.message) from None
            await self.service.update_machine(name, sequences.conductor_definition(fn), namespace=ns)
        return await self.invoke(name, shown, params, blocking, result_only)


def _record(ex: Execution, name: str, result: Any, ok: bool) -> dict[str, Any]:
    end = ex.stopped_at or time.time()
    return {"activationId": ex.id, "namespace": ow_namespace(ex.namespace), "name": name, "version": "0.0.1", "subject": "polyfn",
            "start": int(ex.started_at * 1000), "end": int(end * 1000), "duration": int((end - ex.started_at) * 1000),
            "response": {"status": "success" if ok else "application error", "statusCode": 0 if ok else 1,
                         "success": ok, "result": result},
            "logs": [], "annotations": [{"key": "kind", "value": "sequence"}], "publish": False}
