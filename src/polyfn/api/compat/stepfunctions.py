"""The AWS Step Functions API, as boto3's `stepfunctions` client and `aws stepfunctions` speak it: AWS JSON 1.0
(`POST /`, `X-Amz-Target: AWSStepFunctions.<Operation>`), SigV4 with service `states` and polyfn's keys.

A thin face over `workflows.service.WorkflowService`: it verifies the signature (`auth/sigv4.py`, the one
verifier), checks the key's scope (read for Describe/List/GetExecutionHistory, invoke to start, stop and answer
task tokens, deploy to create, update and delete), maps JSON fields to the service's calls and the service's
refusals to the error types botocore raises (`{"__type": "ExecutionAlreadyExists", "message": …}`, HTTP 400).
Timestamps are epoch seconds, as the protocol sends them. Operations polyfn does not implement answer
`UnknownOperationException` naming the ones it does.

Namespaces (docs/tenancy.md): a request acts in its key's namespace, whose state machines are named in ARNs by
the namespace's account id (`tenancy.account_id`; `default`'s is 000000000000). An ARN of another account is
answered as an absent machine or execution. The node's admin key acts in `default`, or in the namespace whose
account an ARN names.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from polyfn import jsontext
from polyfn.auth import sigv4
from polyfn.auth.keys import allows
from polyfn.tenancy import DEFAULT, account_id, key_namespace
from polyfn.workflows import arns
from polyfn.workflows.errors import DefinitionError
from polyfn.workflows.service import WorkflowError, WorkflowService
from polyfn.workflows.store import Execution, Machine

TARGET_PREFIX = b"AWSStepFunctions."
CONTENT_TYPE = "application/x-amz-json-1.0"
MAX_BODY = 2 * 1024 * 1024
#: auth/sigv4.py refusal reasons → the error types AWS's JSON services send
_SIGV4_ERRORS = {
    sigv4.MISSING: "MissingAuthenticationTokenException",
    sigv4.MALFORMED: "IncompleteSignatureException",
    sigv4.BAD_DATE: "IncompleteSignatureException",
    sigv4.UNKNOWN_KEY: "UnrecognizedClientException",
    sigv4.NO_SECRET: "UnrecognizedClientException",
    sigv4.SKEWED: "InvalidSignatureException",
}


#: the request's key's namespace (None: the node's admin key, which may act in any): set by `handle`
_KEY_NS: contextvars.ContextVar[str | None] = contextvars.ContextVar("sfn_key_namespace", default=DEFAULT)


#: the request fields of every operation and their JSON types (`int`/`bool`/`str`; `tags`: a list of
#: `{"key", "value"}` strings; `keys`: a list of strings): another type is a SerializationException, as AWS answers
_STRINGS = ("stateMachineArn", "executionArn", "name", "definition", "roleArn", "type", "input", "output", "taskToken",
            "error", "cause", "nextToken", "resourceArn", "statusFilter", "severity", "traceHeader")
_FIELD_TYPES: dict[str, Any] = {**dict.fromkeys(_STRINGS, str), "maxResults": int, "reverseOrder": bool,
                                "includeExecutionData": bool, "tags": "tags", "tagKeys": "keys"}


def _typed(req: dict[str, Any]) -> None:
    """Refuse a known field of the wrong JSON type before any operation reads it (before: 500s, `.encode` of an
    int, a list where a tag's key belongs)."""
    for field, value in req.items():
        want = _FIELD_TYPES.get(field)
        if value is None or want is None:
            continue
        if want == "tags":
            ok = isinstance(value, list) and all(isinstance(t, dict) and isinstance(t.get("key"), str)
                                                 and isinstance(t.get("value", ""), str) for t in value)
        elif want == "keys":
            ok = isinstance(value, list) and all(isinstance(k, str) for k in value)
        else:
            ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
        if not ok:
            raise SfnError("SerializationException", f"{field}: expected {want if isinstance(want, str) else want.__name__}"
                           f", not {type(value).__name__}")


class SfnError(Exception):
    def __init__(self, type_: str, message: str, status: int = 400):
        super().__init__(message)
        self.type, self.message, self.status = type_, message, status


def lambda_function_name(value: str) -> str:
    """The polyfn function a Task's Lambda function name, partial ARN or ARN names (the Lambda API's mapping)."""
    from polyfn.api.compat.lambda_wire import LambdaError, parse_function_name, polyfn_name

    try:
        return polyfn_name(parse_function_name(value)[0])
    except LambdaError:
        return value


def _required(body: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise SfnError("ValidationException", f"1 validation error detected: Value null at '{missing[0]}' failed to "
                       "satisfy constraint: Member must not be null")


def _page_size(body: dict[str, Any], default: int = 100) -> int:
    n = body.get("maxResults") or default
    if not isinstance(n, int) or not 0 < n <= 1000:
        raise SfnError("ValidationException", f"maxResults={n!r}: must be 1 to 1000")
    return n


def _token(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(str(value).encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SfnError("InvalidToken", f"Invalid Token: '{value}' is not a nextToken polyfn returned") from None


def _next(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _machine_name(arn: Any) -> str:
    name = arns.machine_name(str(arn or ""))
    if name is None:
        raise SfnError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {arn}'")
    return name


_ABSENT = {"machine": ("StateMachineDoesNotExist", "State Machine Does Not Exist"),
           "execution": ("ExecutionDoesNotExist", "Execution Does Not Exist"),
           "resource": ("ResourceNotFound", "Resource not found")}


def _plain_namespace() -> str:
    """The namespace of a request that names no ARN (the admin key: `default`)."""
    return _KEY_NS.get() or DEFAULT


def _revision_id(m: Machine) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"polyfn-sfn:{m.namespace}:{m.name}:{m.revision}"))


def _execution_json(ex: Execution, data: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"executionArn": arns.execution_arn(ex.machine, ex.name, namespace=ex.namespace),
                           "stateMachineArn": arns.machine_arn(ex.machine, namespace=ex.namespace), "name": ex.name,
                           "status": ex.status,
                           "startDate": ex.started_at}
    if ex.stopped_at is not None:
        out["stopDate"] = ex.stopped_at
    if data:
        out["input"], out["inputDetails"] = ex.input, {"included": True}
        if ex.output is not None:
            out["output"], out["outputDetails"] = ex.output, {"included": True}
    if ex.error is not None:
        out["error"] = ex.error
    if ex.cause is not None:
        out["cause"] = ex.cause
    return out


_STRIP = ("input", "output", "parameters")


def _event_json(ev: dict[str, Any], data: bool) -> dict[str, Any]:
    if data:
        return ev
    out = dict(ev)
    for k, v in ev.items():
        if k.endswith("EventDetails") and isinstance(v, dict):
            out[k] = {f: x for f, x in v.items() if f not in _STRIP and f.removesuffix("Details") not in _STRIP}
    return out


class StepFunctionsApi:
    """A raw ASGI app for `POST /` requests whose X-Amz-Target starts with `AWSStepFunctions.`."""

    def __init__(self, service: WorkflowService, keys: Callable[[], Any], clock: Callable[[], float] = time.time,
                 namespaces: Any = None):
        self.service = service
        self.keys = keys  # the node's KeyRing (None before it is loaded)
        self.namespaces = namespaces  # polyfn.namespaces.Namespaces: the admin key's ARNs of other accounts
        self.clock = clock
        #: each operation's scope and handler, bound (the table: `OPERATIONS`, after the class)
        self.ops: dict[str, tuple[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]] = {
            op: (needed, getattr(self, handler.__name__)) for op, (needed, handler) in OPERATIONS.items()}

    # -- the wire -------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            headers[name] = f"{headers[name]},{v.decode('latin-1')}" if name in headers else v.decode("latin-1")
        try:
            body = await _read(receive)
            out = await self.handle(scope, headers, body)
            status, payload = 200, out
        except SfnError as e:
            status, payload = e.status, {"__type": e.type, "message": e.message}
        data = json.dumps(payload, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(data)).encode()),
            (b"x-amzn-requestid", str(uuid.uuid4()).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def handle(self, scope: dict[str, Any], headers: dict[str, str], body: bytes) -> dict[str, Any]:
        op = headers.get("x-amz-target", "").removeprefix(TARGET_PREFIX.decode())
        key = await self.verify(scope, headers, body)
        if op not in self.ops:
            raise SfnError("UnknownOperationException", f"polyfn's Step Functions API has no operation {op!r} "
                           f"(it has {', '.join(sorted(self.ops))})")
        needed, fn = self.ops[op]
        if key is None or not allows(key, needed, None):
            raise SfnError("AccessDeniedException", f"User: arn:aws:iam::{arns.ACCOUNT}:user/{getattr(key, 'id', '?')} is "
                           f"not authorized to perform: states:{op} (the key has scope {getattr(key, 'scope', '?')!r}"
                           f"{', bound to a function' if getattr(key, 'function', None) else ''}; {op} needs {needed!r})")
        try:
            req = jsontext.loads_text(body or b"{}")
        except ValueError:
            raise SfnError("SerializationException", "the request body is not JSON") from None
        if not isinstance(req, dict):
            raise SfnError("SerializationException", "the request body must be a JSON object")
        _typed(req)
        _KEY_NS.set(key_namespace(key))
        try:
            return await fn(req)
        except WorkflowError as e:
            raise SfnError(e.code, e.message) from None

    async def verify(self, scope: dict[str, Any], headers: dict[str, str], body: bytes) -> Any:
        ring = self.keys()
        claimed = sigv4.claimed_key_id(headers.get("authorization", ""))
        if claimed and ring is not None:
            await ring.ensure(claimed)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        try:
            ok = sigv4.verify(scope["method"], raw_path, sigv4.parse_query(scope["query_string"].decode("latin-1")),
                              headers, ring.signing_credentials if ring is not None else (lambda _k: None),
                              self.clock(), "states", hashlib.sha256(body).hexdigest())
        except sigv4.SigV4Error as e:
            raise SfnError(_SIGV4_ERRORS.get(e.reason, "InvalidSignatureException"), e.message) from None
        return ok.key

    # -- namespaces -----------------------------------------------------------------------------------

    async def _namespace(self, arn: Any, kind: str) -> str:
        """The namespace an ARN's machine or execution is looked up in: the key's (an ARN of another account:
        answered as absent, without looking), or for the admin key the one whose account the ARN names."""
        account = arns.account_of(str(arn or ""))
        ns = _KEY_NS.get()
        if ns is None:  # the node's admin key
            if account is None or account == account_id(DEFAULT):
                return DEFAULT
            names = [n.name for n in await self.namespaces.list()] if self.namespaces is not None else []
            ns = next((n for n in names if account_id(n) == account), None)
            if ns is not None:
                return ns
        elif account is None or account == account_id(ns):
            return ns
        code, text = _ABSENT[kind]
        raise SfnError(code, f"{text}: '{arn}'")

    async def _machine(self, arn: Any) -> tuple[str, str]:
        """(namespace, name) of a state machine ARN (or name)."""
        name = _machine_name(arn)
        return await self._namespace(arn, "machine"), name

    async def _execution(self, arn: Any) -> Execution:
        return await self.service.execution_by_arn(arn, await self._namespace(arn, "execution"))

    # -- state machines -------------------------------------------------------------------------------

    async def create_state_machine(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "name", "definition", "roleArn")
        meta = {k: b[k] for k in ("loggingConfiguration", "tracingConfiguration", "tags") if k in b}
        m = await self.service.create_machine(b["name"], b["definition"], b["roleArn"], b.get("type", "STANDARD"),
                                              namespace=_plain_namespace(), meta=meta)
        return {"stateMachineArn": arns.machine_arn(m.name, namespace=m.namespace), "creationDate": m.created_at}

    async def update_state_machine(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "stateMachineArn")
        if not any(k in b for k in ("definition", "roleArn", "loggingConfiguration", "tracingConfiguration")):
            raise SfnError("MissingRequiredParameter", "Either the definition, the roleArn, the loggingConfiguration "
                           "or the tracingConfiguration must be specified")
        meta = {k: b[k] for k in ("loggingConfiguration", "tracingConfiguration") if k in b}
        ns, name = await self._machine(b["stateMachineArn"])
        m = await self.service.update_machine(name, b.get("definition"), b.get("roleArn"), namespace=ns, meta=meta)
        return {"updateDate": m.updated_at, "revisionId": _revision_id(m)}

    async def delete_state_machine(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "stateMachineArn")
        try:
            ns, name = await self._machine(b["stateMachineArn"])
        except SfnError as e:  # another account's: nothing to delete, as for an absent machine
            if e.type == "StateMachineDoesNotExist":
                return {}
            raise
        await self.service.delete_machine(name, ns)
        return {}

    def _describe(self, m: Machine) -> dict[str, Any]:
        return {"stateMachineArn": arns.machine_arn(m.name, namespace=m.namespace), "name": m.name, "status": "ACTIVE",
                "definition": m.definition, "roleArn": m.role_arn, "type": m.type, "creationDate": m.created_at,
                "loggingConfiguration": m.meta.get("loggingConfiguration", {"level": "OFF", "includeExecutionData": False}),
                "tracingConfiguration": m.meta.get("tracingConfiguration", {"enabled": False}),
                "revisionId": _revision_id(m)}

    async def describe_state_machine(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "stateMachineArn")
        ns, name = await self._machine(b["stateMachineArn"])
        return self._describe(await self.service.machine(name, ns))

    async def describe_state_machine_for_execution(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "executionArn")
        ex = await self._execution(b["executionArn"])
        found = await self.service.store.get_definition(ex.namespace, ex.machine, ex.revision)
        current = await self.service.store.get_machine(ex.namespace, ex.machine)
        return {"stateMachineArn": arns.machine_arn(ex.machine, namespace=ex.namespace), "name": ex.machine,
                "definition": found[1] if found else "", "roleArn": current.role_arn if current else "",
                "updateDate": current.updated_at if current else ex.started_at}

    async def list_state_machines(self, b: dict[str, Any]) -> dict[str, Any]:
        size = _page_size(b)
        after = _token(b.get("nextToken"))
        ms = [m for m in await self.service.list_machines(_plain_namespace()) if after is None or m.name > after]
        out: dict[str, Any] = {"stateMachines": [{"stateMachineArn": arns.machine_arn(m.name, namespace=m.namespace),
                                                  "name": m.name,
                                                  "type": m.type, "creationDate": m.created_at} for m in ms[:size]]}
        if len(ms) > size:
            out["nextToken"] = _next(ms[size - 1].name)
        return out

    async def validate_state_machine_definition(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "definition")
        from polyfn.workflows import definition

        try:
            definition.parse(b["definition"])
        except DefinitionError as e:
            diags = [{"severity": "ERROR", "code": p.code, "message": p.message, "location": p.location or "/"}
                     for p in e.problems][: b.get("maxResults") or 100]
            return {"result": "FAIL", "diagnostics": diags, "truncated": len(e.problems) > len(diags)}
        return {"result": "OK", "diagnostics": [], "truncated": False}

    # -- executions -----------------------------------------------------------------------------------

    async def start_execution(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "stateMachineArn")
        ns, name = await self._machine(b["stateMachineArn"])
        ex = await self.service.start_execution(name, b.get("name"), b.get("input"), ns)
        return {"executionArn": arns.execution_arn(ex.machine, ex.name, namespace=ex.namespace),
                "startDate": ex.started_at}

    async def start_sync_execution(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "stateMachineArn")
        ns, name = await self._machine(b["stateMachineArn"])
        m = await self.service.machine(name, ns)
        if m.type != "EXPRESS":
            raise SfnError("StateMachineTypeNotSupported", "This operation is not supported by this type of state machine: "
                           "StartSyncExecution runs EXPRESS state machines")
        ex = await self.service.run_sync(name, b.get("name"), b.get("input"), ns, timeout=300)
        out = _execution_json(ex)
        if ex.status == "ABORTED":  # stopped at the synchronous limit: a sync execution's status is one of three
            out["status"] = "TIMED_OUT"
        return out

    async def describe_execution(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "executionArn")
        ex = await self._execution(b["executionArn"])
        return {**_execution_json(ex, b.get("includedData") != "METADATA_ONLY"), "redriveCount": 0,
                "redriveStatus": "NOT_REDRIVABLE"}

    async def stop_execution(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "executionArn")
        ex = await self.service.stop_execution(await self._execution(b["executionArn"]), b.get("error"),
                                               b.get("cause"))
        return {"stopDate": ex.stopped_at or self.clock()}

    async def list_executions(self, b: dict[str, Any]) -> dict[str, Any]:
        if not b.get("stateMachineArn"):
            raise SfnError("ValidationException", "Must provide a StateMachine ARN or MapRun ARN")
        ns, name = await self._machine(b["stateMachineArn"])
        await self.service.machine(name, ns)
        size = _page_size(b)
        after = _token(b.get("nextToken"))
        exs = await self.service.list_executions(name, b.get("statusFilter"), size + 1,
                                                 tuple(after) if after else None, ns)  # type: ignore[arg-type]
        out: dict[str, Any] = {"executions": [_execution_json(ex, data=False) for ex in exs[:size]]}
        if len(exs) > size:
            last = exs[size - 1]
            out["nextToken"] = _next([last.started_at, last.id])
        return out

    async def get_execution_history(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "executionArn")
        ex = await self._execution(b["executionArn"])
        size = _page_size(b)
        after = _token(b.get("nextToken")) or 0
        reverse = bool(b.get("reverseOrder"))
        evs = await self.service.history(ex.id, after, size + 1, reverse)
        data = b.get("includeExecutionData", True) is not False
        out: dict[str, Any] = {"events": [_event_json(e, data) for e in evs[:size]]}
        if len(evs) > size:
            out["nextToken"] = _next(evs[size - 1]["id"])
        return out

    # -- task tokens ----------------------------------------------------------------------------------

    async def send_task_success(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "taskToken", "output")
        await self.service.send_task_success(b["taskToken"], b["output"], _KEY_NS.get())
        return {}

    async def send_task_failure(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "taskToken")
        await self.service.send_task_failure(b["taskToken"], b.get("error"), b.get("cause"), _KEY_NS.get())
        return {}

    async def send_task_heartbeat(self, b: dict[str, Any]) -> dict[str, Any]:
        _required(b, "taskToken")
        await self.service.send_task_heartbeat(b["taskToken"], _KEY_NS.get())
        return {}

    # -- tags -----------------------------------------------------------------------------------------

    async def _tagged(self, b: dict[str, Any]) -> Machine:
        _required(b, "resourceArn")
        name = arns.machine_name(str(b["resourceArn"]))
        if name is None or not str(b["resourceArn"]).startswith("arn:"):
            raise SfnError("InvalidArn", f"Invalid Arn: '{b['resourceArn']}'")
        m = await self.service.store.get_machine(await self._namespace(b["resourceArn"], "resource"), name)
        if m is None:
            raise SfnError("ResourceNotFound", f"Resource not found: '{b['resourceArn']}'")
        return m

    async def tag_resource(self, b: dict[str, Any]) -> dict[str, Any]:
        m = await self._tagged(b)
        tags = {t["key"]: t.get("value", "") for t in m.meta.get("tags", [])}
        tags.update({t["key"]: t.get("value", "") for t in b.get("tags") or []})
        await self.service.update_machine(m.name, namespace=m.namespace,
                                          meta={"tags": [{"key": k, "value": v} for k, v in tags.items()]})
        return {}

    async def untag_resource(self, b: dict[str, Any]) -> dict[str, Any]:
        m = await self._tagged(b)
        gone = set(b.get("tagKeys") or [])
        await self.service.update_machine(m.name, namespace=m.namespace,
                                          meta={"tags": [t for t in m.meta.get("tags", []) if t["key"] not in gone]})
        return {}

    async def list_tags_for_resource(self, b: dict[str, Any]) -> dict[str, Any]:
        return {"tags": (await self._tagged(b)).meta.get("tags", [])}


#: the operations (X-Amz-Target `AWSStepFunctions.<op>`): the key scope each needs and the method that answers it
OPERATIONS: dict[str, tuple[str, Callable[..., Awaitable[dict[str, Any]]]]] = {
    "CreateStateMachine":                ("deploy", StepFunctionsApi.create_state_machine),
    "UpdateStateMachine":                ("deploy", StepFunctionsApi.update_state_machine),
    "DeleteStateMachine":                ("deploy", StepFunctionsApi.delete_state_machine),
    "DescribeStateMachine":              ("read",   StepFunctionsApi.describe_state_machine),
    "DescribeStateMachineForExecution":  ("read",   StepFunctionsApi.describe_state_machine_for_execution),
    "ListStateMachines":                 ("read",   StepFunctionsApi.list_state_machines),
    "ValidateStateMachineDefinition":    ("read",   StepFunctionsApi.validate_state_machine_definition),
    "StartExecution":                    ("invoke", StepFunctionsApi.start_execution),
    "StartSyncExecution":                ("invoke", StepFunctionsApi.start_sync_execution),
    "StopExecution":                     ("invoke", StepFunctionsApi.stop_execution),
    "DescribeExecution":                 ("read",   StepFunctionsApi.describe_execution),
    "ListExecutions":                    ("read",   StepFunctionsApi.list_executions),
    "GetExecutionHistory":               ("read",   StepFunctionsApi.get_execution_history),
    "SendTaskSuccess":                   ("invoke", StepFunctionsApi.send_task_success),
    "SendTaskFailure":                   ("invoke", StepFunctionsApi.send_task_failure),
    "SendTaskHeartbeat":                 ("invoke", StepFunctionsApi.send_task_heartbeat),
    "TagResource":                       ("deploy", StepFunctionsApi.tag_resource),
    "UntagResource":                     ("deploy", StepFunctionsApi.untag_resource),
    "ListTagsForResource":               ("read",   StepFunctionsApi.list_tags_for_resource),
}


async def _read(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise SfnError("ValidationException", f"the request is larger than {MAX_BODY} bytes", 413)
        chunks.append(chunk)
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


def is_target(scope: dict[str, Any]) -> bool:
    """Is this request for the Step Functions API (`POST /` with its X-Amz-Target)?"""
    if scope["path"] != "/" or scope.get("method") != "POST":
        return False
    return any(k == b"x-amz-target" and v.startswith(TARGET_PREFIX) for k, v in scope["headers"])
