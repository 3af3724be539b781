"""The AWS Lambda control and invoke API, as boto3 and the `aws lambda` CLI speak it (rest-json, SigV4).

`boto3.client("lambda", endpoint_url="http://127.0.0.1:8080", aws_access_key_id="polyfn-admin",
aws_secret_access_key=<admin key>, region_name=<any>)` creates, configures, lists, invokes and deletes
polyfn functions. Every request is SigV4-verified (`auth/sigv4.py`, service `lambda`) against the node's
key store, and the key's scope decides what it may do (`_ACTIONS`: read for Get/List, invoke for Invoke,
deploy for changes; a key bound to one function acts on that function only): else 403
`AccessDeniedException`. `polyfn keys create --scope S [--function F] --json` prints credentials for it.

Mapping:
* a Lambda function is a polyfn function; a Lambda name that is not a valid polyfn name (`My_Func`) is
  stored lower-cased with `-` (`my-func`) and the original kept in the annotation `aws.lambda/name`;
* `Runtime` chooses the polyfn runtime and the `aws` flavor (`manifests/runtimes.py`);
  `Role`, `Description`, `Tags` and the zip's SHA-256 are kept as `aws.lambda/*` annotations;
* every Create/UpdateFunctionCode/UpdateFunctionConfiguration is a new polyfn revision, live when the call
  returns, so `State` is always `Active` and `LastUpdateStatus` `Successful` (the waiters pass at once);
* a published version is a polyfn revision frozen under a version number, an alias names a version
  (`store/versions.py`); `Qualifier` (`$LATEST`, a version or an alias) picks the revision an invocation
  runs, served by its own pool when it is not the current one (`scheduler/registry.py`, `pinned`);
* every route polyfn does not implement answers `UnsupportedOperationException`.

Errors: the HTTP status, `x-amzn-ErrorType: <Type>` and `{"Type": "User", "Message": ...}`, the shape
botocore parses into `ClientError`. Every response carries `x-amzn-RequestId`.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import json
import math
import random
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from polyfn import jsontext
from polyfn.api.compat import common, eventstream, lambda_durable
from polyfn.api.compat.lambda_wire import (
    _ACTIONS,
    _ALIAS_FIELDS,
    _ALIAS_RE,
    _CODE_FIELDS,
    _CONFIG_FIELDS,
    _CREATE_FIELDS,
    _PUBLISH_FIELDS,
    _SIGV4_ERRORS,
    A_DURABLE,
    A_NAME,
    A_TAG,
    A_ZIP,
    ACCOUNT,
    CODE_URL_TTL,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    TAIL_BYTES,
    LambdaError,
    Target,
    _invalid,
    _json,
    _page,
    _request_id,
    _spec_fields,
    _unknown,
    alias_configuration,
    arn,
    configuration,
    error_response,
    parse_function_name,
    polyfn_name,
    revision_id,
    revision_info,
)
from polyfn.auth import sigv4
from polyfn.auth.keys import allows
from polyfn.call import Call
from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.invoker import Outcome
from polyfn.manifests import runtimes
from polyfn.model import FunctionInfo, SpecError, validate_name
from polyfn.queue.dispatcher import REVISION_HEADER
from polyfn.store.versions import LATEST, Alias, InUse, VersionStore
from polyfn.tenancy import DEFAULT, key_namespace, local, owns, qualify

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import LiveFunctions

#: the namespace of the request's key, set by `LambdaApi.auth` (every handler's first step); the names a request
#: carries are held in it (tenancy.py). A context variable: each request runs in its own task.
_NAMESPACE: contextvars.ContextVar[str] = contextvars.ContextVar("lambda_namespace", default=DEFAULT)


def _zip_files(settings: Settings, code: dict[str, Any], fields: dict[str, Any]) -> dict[str, bytes]:
    if code.get("ImageUri"):
        raise _invalid("polyfn runs code, not container images: send Code.ZipFile (PackageType Zip)")
    if code.get("S3Bucket") or code.get("S3Key"):
        raise _invalid("polyfn takes code as Code.ZipFile; S3Bucket/S3Key code locations are not supported")
    raw = code.get("ZipFile")
    if not raw:
        raise _invalid("Code.ZipFile is required (the function's code as a zip archive)")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise _invalid("Code.ZipFile is not valid base64") from None
    s = settings
    try:
        files = archive.files_from_zip(data, s.max_code_size, s.max_code_files)
    except DeployError as e:
        if e.status == 413:
            raise LambdaError(413, "RequestEntityTooLargeException", e.message) from None
        raise _invalid(f"Could not unzip uploaded file: {e.message}") from None
    digest = archive.digest(files)
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    ann = dict(fields.get("annotations") or {})
    ann[A_ZIP] = f"{digest}:{sha}:{len(data)}"
    fields["annotations"] = ann
    return files


class LambdaApi(common.VendorFace):
    """`store` is the metadata store whole (its engine also holds the versions and aliases); `keys` the key ring
    (SigV4 verification needs its `ensure` and signing credentials)."""

    def __init__(self, *, registry: LiveFunctions, workflows: Any, admin_key: str, **shared: Any):
        super().__init__(**shared)
        self.store: Any
        self.keys: Any
        self.registry = registry
        self.workflows = workflows  # durable executions (lambda_durable.py)
        self.admin_key = admin_key  # signs the code download URLs
        self._versions: VersionStore | None = None
        self.durable: Any = None  # lambda_durable.DurableApi: the durable-execution control plane

    @property
    def versions(self) -> VersionStore:
        if self._versions is None:
            self._versions = VersionStore(self.store)
        return self._versions

    # -- plumbing -------------------------------------------------------------------------------------

    async def auth(self, request: Request, action: str = "", function: str | None = None
                   ) -> tuple[sigv4.Verified, bytes]:
        """Verify the SigV4 signature, then that the key may do `action` (a Lambda action name, see
        `_ACTIONS`) on `function` (a polyfn name; None: not about one function)."""
        body = await request.body()
        scope = request.scope
        raw_path = scope.get("raw_path") or scope["path"].encode()
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        ring = self.keys
        claimed = sigv4.claimed_key_id(headers.get("authorization", ""))
        if claimed and ring is not None:
            await ring.ensure(claimed)
        try:
            ok = sigv4.verify(request.method, raw_path.decode("latin-1").split("?", 1)[0],
                              sigv4.parse_query(scope["query_string"].decode("latin-1"), plus_is_space=True),
                              headers, ring.signing_credentials if ring is not None else (lambda _k: None),
                              time.time(), "lambda", hashlib.sha256(body).hexdigest())
        except sigv4.SigV4Error as e:
            raise LambdaError(403, _SIGV4_ERRORS.get(e.reason, "InvalidSignatureException"), e.message) from None
        _NAMESPACE.set(key_namespace(ok.key) or DEFAULT)  # (every handler authenticates first: names below)
        if action:
            self.require(ok, action, function)
        return ok, body

    @staticmethod
    def require(ok: sigv4.Verified, action: str, function: str | None) -> None:
        key = ok.key
        needed = _ACTIONS[action]
        if key is None or not allows(key, needed, function):
            bound = f", bound to function {key.function!r}" if key is not None and key.function else ""
            resource = arn(ok.region, function) if function else "*"
            raise LambdaError(403, "AccessDeniedException",
                              f"User: arn:aws:iam::{ACCOUNT}:user/{ok.access_key_id} is not authorized to perform: "
                              f"lambda:{action} on resource: {resource} (the key has scope "
                              f"{getattr(key, 'scope', '?')!r}{bound}; {action} needs {needed!r})")

    @staticmethod
    def pname(value: str) -> str:
        """The polyfn name a Lambda function name/ARN refers to (what scopes are bound to): held in the
        namespace of the request's key (tenancy.py)."""
        return qualify(_NAMESPACE.get(), polyfn_name(parse_function_name(value)[0]))

    async def find(self, value: str, region: str, qualifier: str | None = None) -> FunctionInfo:
        lname, q = parse_function_name(value)
        q = qualifier or q
        pname = self.pname(value)
        info = await self.store.get_function(pname)
        if info is None or info.spec.annotations.get(A_NAME, local(info.name)) != lname:
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {arn(region, lname)}"
                              + (f":{q}" if q else ""))
        return info

    async def resolve(self, value: str, region: str, qualifier: str | None = None, route: bool = False) -> Target:
        """The function `value` names at `qualifier` (or the name's own `:qualifier`): `$LATEST`, a published
        version, or an alias. With `route`, an alias with weights picks its version at random by weight
        (an invocation); otherwise its primary version."""
        lname, q = parse_function_name(value)
        q = qualifier or q
        info = await self.find(value, region, q)
        if q in (None, LATEST):
            return Target(info, None, LATEST)
        alias = None
        number = q
        if not q.isdigit():
            alias = await self.versions.get_alias(info.name, q)
            if alias is None:
                raise LambdaError(404, "ResourceNotFoundException",
                                  f"Cannot find alias arn: {arn(region, lname)}:{q}")
            number = alias.version
            if route and alias.weights:
                number = _pick(alias.version, alias.weights)
            if number == LATEST:
                return Target(info, None, LATEST, alias)
        v = await self.versions.get_version(info.name, int(number))
        rev = await self.store.get_revision(info.name, v.revision) if v is not None else None
        if v is None or rev is None:
            raise LambdaError(404, "ResourceNotFoundException",
                              f"Function not found: {arn(region, lname)}:{number}")
        return Target(revision_info(info, rev), rev, str(v.number), alias, v.description)

    def target_configuration(self, t: Target, region: str, qualified: bool) -> dict[str, Any]:
        q = (t.alias.name if t.alias else t.version) if qualified else None
        return configuration(t.info, region, t.version, q, t.description)

    async def deploy(self, fields: dict[str, Any], files: dict[str, bytes]) -> FunctionInfo:
        try:
            info, _created, _detected = await self.deployer.deploy(fields, files)
        except DeployError as e:
            if e.status == 413:
                raise LambdaError(413, "RequestEntityTooLargeException", e.message) from None
            if e.status == 429:  # a namespace's functions quota (quotas.py)
                raise LambdaError(429, "TooManyRequestsException", e.message) from None
            raise _invalid(e.message) from None
        return info

    @staticmethod
    def body_json(body: bytes) -> dict[str, Any]:
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise LambdaError(400, "SerializationException", "the request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise LambdaError(400, "SerializationException", "the request body must be a JSON object")
        return value

    @staticmethod
    def check_revision(body: dict[str, Any], info: FunctionInfo) -> None:
        want = body.get("RevisionId")
        if want and want != revision_id(info):
            raise LambdaError(412, "PreconditionFailedException",
                              "The Revision Id provided does not match the latest Revision Id. "
                              "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")

    # -- operations -----------------------------------------------------------------------------------

    async def create_function(self, request: Request) -> Response:
        ident, raw = await self.auth(request)
        body = self.body_json(raw)
        _unknown(body, _CREATE_FIELDS, "CreateFunction")
        for required in ("FunctionName", "Role", "Code"):
            if required not in body:
                raise _invalid(f"{required} is required")
        if body.get("PackageType", "Zip") != "Zip":
            raise _invalid("PackageType Image is not supported: polyfn runs code (Zip), not container images")
        lname, q = parse_function_name(str(body["FunctionName"]))
        if q:
            raise _invalid("FunctionName must not carry a qualifier in CreateFunction")
        pname = self.pname(lname)
        self.require(ident, "CreateFunction", pname)
        try:
            validate_name(pname)
        except SpecError as e:
            raise _invalid(str(e)) from None
        if await self.store.get_function(pname) is not None:
            raise LambdaError(409, "ResourceConflictException", f"Function already exist: {lname}")
        if "Runtime" not in body:
            raise _invalid("Runtime is required for a Zip package: one of "
                           + ", ".join(runtimes.supported_lambda_runtimes()))
        base = {"name": pname, "timeout": float(DEFAULT_TIMEOUT), "memory": DEFAULT_MEMORY,
                "handler": "lambda_function.lambda_handler",
                "annotations": {A_NAME: lname} if lname != local(pname) else {}}
        fields = _spec_fields(body, base)
        code = body.get("Code") or {}
        _unknown(code, _CODE_FIELDS, "Code")
        files = _zip_files(self.settings, code, fields)
        info = await self.deploy(fields, files)
        if body.get("Publish"):
            return _json(await self.publish(info, ident.region), 201)
        return _json(configuration(info, ident.region), 201)

    async def publish(self, info: FunctionInfo, region: str, description: str = "") -> dict[str, Any]:
        """Freeze the current revision as a version (or return the newest one, if nothing changed)."""
        done = await self.versions.publish(info.name, description)
        rev = await self.store.get_revision(info.name, done[0].revision) if done is not None else None
        if done is None or rev is None:  # deleted meanwhile
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {arn(region, local(info.name))}")
        v = done[0]
        return self.target_configuration(Target(revision_info(info, rev), rev, str(v.number), None, v.description),
                                         region, True)

    async def get_function(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.auth(request)
        self.require(ident, "GetFunction", self.pname(function_name))
        t = await self.resolve(function_name, ident.region, request.query_params.get("Qualifier"))
        info = t.info
        cfg = self.target_configuration(t, ident.region, _qualified(function_name, request))
        expires = int(time.time()) + CODE_URL_TTL
        sig = self._code_sig(info, expires)
        base = str(request.base_url).rstrip("/")
        location = f"{base}/2015-03-31/functions/{info.name}/code.zip?revision={info.revision}&expires={expires}&signature={sig}"
        tags = {k[len(A_TAG):]: v for k, v in info.spec.annotations.items() if k.startswith(A_TAG)}
        return _json({"Configuration": cfg, "Code": {"RepositoryType": "S3", "Location": location}, "Tags": tags})

    def _code_sig(self, info: FunctionInfo, expires: int) -> str:
        msg = f"{info.name}:{info.revision}:{expires}".encode()
        return hmac.new(self.admin_key.encode(), msg, hashlib.sha256).hexdigest()

    async def download_code(self, request: Request, name: str) -> Response:
        """Code.Location of GetFunction: a link valid for CODE_URL_TTL seconds, like S3's presigned URL."""
        q = request.query_params
        info = await self.store.get_function(name)
        try:
            expires = int(q.get("expires", "0"))
            revision = int(q.get("revision", "0"))
        except ValueError:
            expires = revision = 0
        rev = await self.store.get_revision(name, revision) if info is not None else None
        if (info is None or rev is None or expires < time.time()
                or not hmac.compare_digest(self._code_sig(revision_info(info, rev), expires), q.get("signature", ""))):
            raise LambdaError(403, "AccessDeniedException", "the code link is invalid or has expired")
        import asyncio

        data = await asyncio.to_thread(common.zip_code, rev.code_dir)
        return Response(data, media_type="application/zip")

    async def get_configuration(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.auth(request)
        self.require(ident, "GetFunctionConfiguration", self.pname(function_name))
        t = await self.resolve(function_name, ident.region, request.query_params.get("Qualifier"))
        return _json(self.target_configuration(t, ident.region, _qualified(function_name, request)))

    async def list_functions(self, request: Request) -> Response:
        ident, _ = await self.auth(request)
        bound = getattr(ident.key, "function", None)  # a key bound to one function lists only that one
        if not bound:
            self.require(ident, "ListFunctions", None)
        else:
            self.require(ident, "ListFunctions", bound)
        ns = _NAMESPACE.get()
        infos = [i for i in await self.store.list_functions() if owns(ns, i.name) and (not bound or i.name == bound)]
        page, marker = _page(infos, request.query_params, lambda i: i.name, "ListFunctions")
        out: dict[str, Any] = {"Functions": [configuration(i, ident.region) for i in page]}
        if marker:
            out["NextMarker"] = marker
        return _json(out)

    async def delete_function(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.auth(request)
        self.require(ident, "DeleteFunction", self.pname(function_name))
        q = request.query_params.get("Qualifier") or parse_function_name(function_name)[1]
        info = await self.find(function_name, ident.region)
        if q is not None:
            return await self.delete_version(info, q, ident.region)
        if not await self.remove_function(info.name):
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {function_name}")
        return Response(status_code=204, headers={"x-amzn-RequestId": _request_id()})

    async def delete_version(self, info: FunctionInfo, q: str, region: str) -> Response:
        lname = configuration(info, region)["FunctionName"]
        if q == LATEST:
            raise _invalid("$LATEST version cannot be deleted without deleting the function.")
        if not q.isdigit():
            raise _invalid(f"Qualifier {q!r} of DeleteFunction must be a version number (delete an alias with "
                           "DeleteAlias)")
        try:
            v = await self.versions.delete_version(info.name, int(q))
        except InUse as e:
            raise LambdaError(409, "ResourceConflictException",
                              f"Unable to delete version because the following aliases reference it: {e}") from None
        if v is None:
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {arn(region, lname)}:{q}")
        if v.revision != info.revision:
            self.registry.remove_revision(info.name, v.revision)
        return Response(status_code=204, headers={"x-amzn-RequestId": _request_id()})

    async def update_code(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.auth(request)
        body = self.body_json(raw)
        _unknown(body, _CODE_FIELDS, "UpdateFunctionCode")
        self.require(ident, "UpdateFunctionCode", self.pname(function_name))
        info = await self.find(function_name, ident.region)
        self.check_revision(body, info)
        fields = {k: v for k, v in _spec_dict(info).items()}
        files = _zip_files(self.settings, body, fields)
        if body.get("DryRun"):
            return _json(configuration(info, ident.region))
        info = await self.deploy(fields, files)
        if body.get("Publish"):
            return _json(await self.publish(info, ident.region))
        return _json(configuration(info, ident.region))

    async def update_configuration(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.auth(request)
        body = self.body_json(raw)
        _unknown(body, _CONFIG_FIELDS, "UpdateFunctionConfiguration")
        self.require(ident, "UpdateFunctionConfiguration", self.pname(function_name))
        info = await self.find(function_name, ident.region)
        self.check_revision(body, info)
        fields = _spec_fields(body, _spec_dict(info))
        files = await common.current_files(self.store, info.name)
        if files is None:
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {function_name}")
        info = await self.deploy(fields, files)
        return _json(configuration(info, ident.region))

    async def _invoke_target(self, request: Request, function_name: str) -> tuple[bytes, Any]:
        """The body and the resolved target of Invoke and InvokeWithResponseStream (the caller authorised)."""
        ident, body = await self.auth(request)
        self.require(ident, "InvokeFunction", self.pname(function_name))
        t = await self.resolve(function_name, ident.region, request.query_params.get("Qualifier"), route=True)
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

    # -- versions and aliases --------------------------------------------------------------------------

    async def publish_version(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.auth(request)
        body = self.body_json(raw)
        _unknown(body, _PUBLISH_FIELDS, "PublishVersion")
        self.require(ident, "PublishVersion", self.pname(function_name))
        info = await self.find(function_name, ident.region)
        self.check_revision(body, info)
        want = body.get("CodeSha256")
        if want and want != configuration(info, ident.region)["CodeSha256"]:
            raise LambdaError(412, "PreconditionFailedException",
                              f"CodeSha256 ({want}) is different from current CodeSha256 in $LATEST. "
                              "Please try again with the CodeSha256 in $LATEST.")
        return _json(await self.publish(info, ident.region, str(body.get("Description") or "")[:256]), 201)

    async def list_versions(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.auth(request)
        self.require(ident, "ListVersionsByFunction", self.pname(function_name))
        info = await self.find(function_name, ident.region)
        entries: list[tuple[str, Target]] = [(LATEST, Target(info, None, LATEST))]  # "$" sorts before digits
        for v in await self.versions.list_versions(info.name):
            rev = await self.store.get_revision(info.name, v.revision)
            if rev is not None:
                entries.append((f"{v.number:010d}", Target(revision_info(info, rev), rev, str(v.number), None,
                                                            v.description)))
        page, marker = _page(entries, request.query_params, lambda e: e[0], "ListVersionsByFunction")
        out: dict[str, Any] = {"Versions": [self.target_configuration(t, ident.region, True) for _k, t in page]}
        if marker:
            out["NextMarker"] = marker
        return _json(out)

    async def alias_fields(self, info: FunctionInfo, body: dict[str, Any], alias: Alias, region: str) -> Alias:
        """Apply CreateAlias/UpdateAlias fields to `alias`, checking that the versions exist."""
        if "FunctionVersion" in body:
            alias.version = str(body["FunctionVersion"])
        if "Description" in body:
            alias.description = str(body["Description"] or "")[:256]
        if "RoutingConfig" in body:
            weights = (body["RoutingConfig"] or {}).get("AdditionalVersionWeights") or {}
            if not isinstance(weights, dict) or len(weights) > 1:
                raise _invalid("RoutingConfig.AdditionalVersionWeights takes at most one other version")
            alias.weights = {}
            for k, w in weights.items():
                if not isinstance(w, int | float) or not 0.0 <= w <= 1.0:
                    raise _invalid(f"RoutingConfig.AdditionalVersionWeights[{k}]={w!r}: must be 0.0..1.0")
                alias.weights[str(k)] = float(w)
        lname = configuration(info, region)["FunctionName"]
        for v in (alias.version, *alias.weights):
            if v == LATEST:
                continue
            if not v.isdigit() or await self.versions.get_version(info.name, int(v)) is None:
                raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {arn(region, lname)}:{v}")
        if alias.weights:
            if alias.version == LATEST or LATEST in alias.weights:
                raise _invalid("$LATEST is not supported for an alias pointing to more than 1 version")
            if alias.version in alias.weights:
                raise _invalid(f"RoutingConfig: version {alias.version} is already the alias's FunctionVersion")
        return alias

    async def create_alias(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.auth(request)
        body = self.body_json(raw)
        _unknown(body, _ALIAS_FIELDS - {"RevisionId"}, "CreateAlias")
        self.require(ident, "CreateAlias", self.pname(function_name))
        info = await self.find(function_name, ident.region)
        name = str(body.get("Name") or "")
        if not _ALIAS_RE.match(name):
            raise _invalid(f"Alias name {name!r} is not valid: 1-128 letters, digits, '-' or '_', "
                           "not only digits, not $LATEST")
        if "FunctionVersion" not in body:
            raise _invalid("FunctionVersion is required")
        alias = await self.alias_fields(info, body, Alias(function=info.name, name=name, version=""), ident.region)
        lname = configuration(info, ident.region)["FunctionName"]
        if not await self.versions.create_alias(alias):
            raise LambdaError(409, "ResourceConflictException",
                              f"Alias already exists: {arn(ident.region, lname)}:{name}")
        return _json(alias_configuration(alias, lname, ident.region), 201)

    async def get_alias(self, request: Request, function_name: str, alias_name: str) -> Response:
        ident, _ = await self.auth(request)
        self.require(ident, "GetAlias", self.pname(function_name))
        info, alias = await self.find_alias(function_name, alias_name, ident.region)
        return _json(alias_configuration(alias, configuration(info, ident.region)["FunctionName"], ident.region))

    async def find_alias(self, function_name: str, alias_name: str, region: str) -> tuple[FunctionInfo, Alias]:
        info = await self.find(function_name, region)
        alias = await self.versions.get_alias(info.name, alias_name)
        if alias is None:
            lname = configuration(info, region)["FunctionName"]
            raise LambdaError(404, "ResourceNotFoundException", f"Cannot find alias arn: {arn(region, lname)}:{alias_name}")
        return info, alias

    async def update_alias(self, request: Request, function_name: str, alias_name: str) -> Response:
        ident, raw = await self.auth(request)
        body = self.body_json(raw)
        _unknown(body, _ALIAS_FIELDS - {"Name"}, "UpdateAlias")
        self.require(ident, "UpdateAlias", self.pname(function_name))
        info, alias = await self.find_alias(function_name, alias_name, ident.region)
        lname = configuration(info, ident.region)["FunctionName"]
        if body.get("RevisionId") and body["RevisionId"] != alias_configuration(alias, lname, ident.region)["RevisionId"]:
            raise LambdaError(412, "PreconditionFailedException",
                              "The Revision Id provided does not match the latest Revision Id. "
                              "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
        alias = await self.alias_fields(info, body, alias, ident.region)
        if not await self.versions.update_alias(alias):
            raise LambdaError(404, "ResourceNotFoundException", f"Cannot find alias arn: {arn(ident.region, lname)}:{alias_name}")
        return _json(alias_configuration(alias, lname, ident.region))

    async def delete_alias(self, request: Request, function_name: str, alias_name: str) -> Response:
        ident, _ = await self.auth(request)
        self.require(ident, "DeleteAlias", self.pname(function_name))
        info = await self.find(function_name, ident.region)
        await self.versions.delete_alias(info.name, alias_name)  # Lambda answers 204 for a missing alias too
        return Response(status_code=204, headers={"x-amzn-RequestId": _request_id()})

    async def list_aliases(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.auth(request)
        self.require(ident, "ListAliases", self.pname(function_name))
        info = await self.find(function_name, ident.region)
        lname = configuration(info, ident.region)["FunctionName"]
        version = request.query_params.get("FunctionVersion")
        items = [a for a in await self.versions.list_aliases(info.name)
                 if version is None or a.version == version or version in a.weights]
        page, marker = _page(items, request.query_params, lambda a: a.name, "ListAliases")
        out: dict[str, Any] = {"Aliases": [alias_configuration(a, lname, ident.region) for a in page]}
        if marker:
            out["NextMarker"] = marker
        return _json(out)

    async def unsupported(self, request: Request, rest: str = "") -> Response:
        await self.auth(request)
        raise LambdaError(400, "UnsupportedOperationException",
                          f"polyfn does not implement {request.method} {request.url.path} of the Lambda API "
                          "(supported: Create/Get/List/Delete functions, UpdateFunctionCode, "
                          "UpdateFunctionConfiguration, Invoke, PublishVersion, ListVersionsByFunction, "
                          "Create/Get/Update/Delete/ListAliases; see docs/compat.md)")


def _spec_dict(info: FunctionInfo) -> dict[str, Any]:
    import msgspec

    d = msgspec.structs.asdict(info.spec)
    d["env"] = dict(d["env"])
    d["annotations"] = dict(d["annotations"])
    return d


def _qualified(function_name: str, request: Request) -> bool:
    """The caller named a qualifier (the response's FunctionArn then carries it, as Lambda's does)."""
    return bool(request.query_params.get("Qualifier") or parse_function_name(function_name)[1])


def _pick(primary: str, weights: dict[str, float], rand: Any = random.random) -> str:
    """The version an invocation of a weighted alias runs: each extra version with its weight, else primary."""
    x = rand()
    for version, w in weights.items():
        if x < w:
            return version
        x -= w
    return primary


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


def install(app: FastAPI, **services: Any) -> None:
    """`services`: what `LambdaApi` takes (the composition root hands them in)."""
    api = LambdaApi(**services)
    r = APIRouter(include_in_schema=False)
    p = "/2015-03-31/functions"
    r.add_api_route(p, api.create_function, methods=["POST"])
    r.add_api_route(p, api.list_functions, methods=["GET"])
    r.add_api_route(p + "/", api.list_functions, methods=["GET"])
    r.add_api_route(p + "/{function_name}", api.get_function, methods=["GET"])
    r.add_api_route(p + "/{function_name}", api.delete_function, methods=["DELETE"])
    r.add_api_route(p + "/{name}/code.zip", api.download_code, methods=["GET"])
    r.add_api_route(p + "/{function_name}/configuration", api.get_configuration, methods=["GET"])
    r.add_api_route(p + "/{function_name}/configuration", api.update_configuration, methods=["PUT"])
    r.add_api_route(p + "/{function_name}/code", api.update_code, methods=["PUT"])
    r.add_api_route(p + "/{function_name}/invocations", api.invoke, methods=["POST"])
    r.add_api_route("/2021-11-15/functions/{function_name}/response-streaming-invocations", api.invoke_stream,
                    methods=["POST"])
    r.add_api_route(p + "/{function_name}/versions", api.publish_version, methods=["POST"])
    r.add_api_route(p + "/{function_name}/versions", api.list_versions, methods=["GET"])
    r.add_api_route(p + "/{function_name}/aliases", api.create_alias, methods=["POST"])
    r.add_api_route(p + "/{function_name}/aliases", api.list_aliases, methods=["GET"])
    r.add_api_route(p + "/{function_name}/aliases/{alias_name}", api.get_alias, methods=["GET"])
    r.add_api_route(p + "/{function_name}/aliases/{alias_name}", api.update_alias, methods=["PUT"])
    r.add_api_route(p + "/{function_name}/aliases/{alias_name}", api.delete_alias, methods=["DELETE"])
    api.durable = lambda_durable.install(r, api.auth, api.workflows)
    app.add_middleware(lambda_durable.CheckpointFastPath, durable=lambda: api.durable)
    for prefix in ("2015-03-31", "2016-08-19", "2017-03-31", "2017-10-31", "2018-10-31", "2019-09-25",
                   "2019-09-30", "2020-04-22", "2020-06-30", "2021-10-31"):
        r.add_api_route(f"/{prefix}/{{rest:path}}", api.unsupported,
                        methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    app.include_router(r)

    @app.exception_handler(LambdaError)
    async def _lambda_error(_: Request, e: LambdaError) -> Response:
        return error_response(e)
