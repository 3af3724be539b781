"""The AWS Lambda API's vocabulary, shared by its faces (lambda_api.py's route table over lambda_face.py,
lambda_functions.py, lambda_invoke.py and lambda_versions.py; lambda_durable.py: durable executions): names and
ARNs, annotations that keep Lambda's fields on a polyfn function, the error shape botocore parses, the
configuration document, request validation."""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import Response

from polyfn.auth import sigv4
from polyfn.manifests import runtimes
from polyfn.model import FunctionInfo, Revision
from polyfn.store.versions import LATEST, Alias
from polyfn.tenancy import DEFAULT, account_id, local

A_DURABLE = "aws.lambda/durable"  # annotation: the function's DurableConfig (JSON)


def durable_config(annotations: dict[str, str]) -> dict[str, Any] | None:
    """The function's DurableConfig (lambda_durable.py), None when it is not a durable function."""
    raw = annotations.get(A_DURABLE)
    if raw is None:
        return None
    try:
        cfg = json.loads(raw)
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}



ACCOUNT = "000000000000"  # the default namespace's account id (`account()`: the request's)
#: the namespace of the request's key, set by `LambdaFace.auth` (every handler's first step); the names a request
#: carries are held in it (tenancy.py) and its ARNs carry its account id. A context variable: each request runs in
#: its own task.
NAMESPACE: contextvars.ContextVar[str] = contextvars.ContextVar("lambda_namespace", default=DEFAULT)
A = "aws.lambda/"  # annotation prefix
A_NAME, A_ROLE, A_DESC, A_RUNTIME, A_ZIP = A + "name", A + "role", A + "description", A + "runtime", A + "zip"
A_TAG = A + "tag/"
DEFAULT_TIMEOUT = 3  # seconds: Lambda's defaults, so functions behave as they would there
DEFAULT_MEMORY = 128
TAIL_BYTES = 4096
CODE_URL_TTL = 600  # seconds a GetFunction Code.Location link stays valid

_NAME_RE = re.compile(
    r"^(?:(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:)?(?P<account>\d{12}):function:)?"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?$"
)
#: Accepted but without effect here (metadata or AWS infrastructure polyfn has no equivalent of).
_IGNORED = {"Publish", "TracingConfig", "Architectures", "KMSKeyArn", "LoggingConfig",
            "VpcConfig", "DeadLetterConfig", "SnapStart", "RevisionId", "DryRun", "CodeSigningConfigArn"}
_CREATE_FIELDS = {"FunctionName", "Role", "Code", "Runtime", "Handler", "Description", "Timeout", "MemorySize",
                  "EphemeralStorage", "Environment", "Tags", "PackageType", "DurableConfig"} | _IGNORED
_CONFIG_FIELDS = {"Role", "Handler", "Description", "Timeout", "MemorySize", "EphemeralStorage", "Environment",
                  "Runtime", "DurableConfig"} | _IGNORED
_CODE_FIELDS = {"ZipFile", "S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri", "Publish"} | _IGNORED
_PUBLISH_FIELDS = {"CodeSha256", "Description", "RevisionId"}
_ALIAS_FIELDS = {"Name", "FunctionVersion", "Description", "RoutingConfig", "RevisionId"}
_ALIAS_RE = re.compile(r"^(?!\d+$)[A-Za-z0-9_-]{1,128}$")
#: a published version number as Lambda names one (1 to 10 digits: beyond any the store holds)
_VERSION_RE = re.compile(r"[0-9]{1,10}")


#: the scope each Lambda action needs (auth/keys.py: read < invoke < deploy < admin)
_ACTIONS = {
    "GetFunction": "read", "GetFunctionConfiguration": "read", "ListFunctions": "read",
    "ListVersionsByFunction": "read", "GetAlias": "read", "ListAliases": "read",
    "InvokeFunction": "invoke",
    "CreateFunction": "deploy", "DeleteFunction": "deploy", "UpdateFunctionCode": "deploy",
    "UpdateFunctionConfiguration": "deploy", "PublishVersion": "deploy", "CreateAlias": "deploy",
    "UpdateAlias": "deploy", "DeleteAlias": "deploy",
}
#: auth/sigv4.py refusal reasons → the x-amzn-ErrorType AWS sends
_SIGV4_ERRORS = {
    sigv4.MISSING: "MissingAuthenticationTokenException",
    sigv4.MALFORMED: "IncompleteSignatureException",
    sigv4.BAD_DATE: "IncompleteSignatureException",
    sigv4.QUERY_PARAMS: "IncompleteSignatureException",
    sigv4.UNKNOWN_KEY: "UnrecognizedClientException",
    sigv4.NO_SECRET: "UnrecognizedClientException",
}


class LambdaError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers or {}


def _request_id() -> str:
    return str(uuid.uuid4())


def error_response(e: LambdaError) -> Response:
    body = {"Type": "User" if e.status < 500 else "Service", "Message": e.message, "message": e.message}
    headers = {"x-amzn-ErrorType": e.type, "x-amzn-RequestId": _request_id(), **e.headers}
    return Response(json.dumps(body), status_code=e.status, headers=headers, media_type="application/json")


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(obj), status_code=status, media_type="application/json",
                    headers={"x-amzn-RequestId": _request_id(), **(headers or {})})


def _invalid(message: str) -> LambdaError:
    return LambdaError(400, "InvalidParameterValueException", message)


def parse_function_name(value: str) -> tuple[str, str | None]:
    """(lambda name, qualifier) from a name, partial ARN or ARN, each optionally with `:qualifier`."""
    m = _NAME_RE.match(value or "")
    if not m:
        raise LambdaError(400, "ValidationException",
                          f"1 validation error detected: Value '{value}' at 'functionName' failed to satisfy "
                          "constraint: a function name, partial ARN or ARN")
    return m["name"], m["qualifier"]


def polyfn_name(lambda_name: str) -> str:
    """The polyfn function name for a Lambda function name (lower case, `_` → `-`, leading letter)."""
    n = lambda_name.lower().replace("_", "-")
    if not n[:1].isalpha():
        n = "fn-" + n
    return n[:63].rstrip("-") or "fn"


def account() -> str:
    """The account id of the request's namespace (`tenancy.account_id`: `default` keeps 000000000000, as the
    workflows' ARNs do)."""
    return account_id(NAMESPACE.get())


def arn_account(value: str) -> str | None:
    """The account id a function ARN (or partial ARN `ACCOUNT:function:NAME`) names; None for a plain name."""
    m = _NAME_RE.match(value or "")
    return m["account"] if m else None


def arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account()}:function:{name}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}+0000"


def revision_id(info: FunctionInfo) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"polyfn:{info.name}@{info.revision}:{info.code_sha256}"))


def configuration(info: FunctionInfo, region: str, version: str = LATEST, qualifier: str | None = None,
                  description: str = "") -> dict[str, Any]:
    """Lambda's FunctionConfiguration for a polyfn function (or one of its versions: `version`, and the
    `qualifier` its ARN ends with; `description` is the version's own, if it has one)."""
    spec = info.spec
    a = spec.annotations
    name = a.get(A_NAME, local(info.name))  # (a namespace's function by its local name: tenancy.py)
    runtime = a.get(A_RUNTIME) or ("python3.12" if spec.runtime == "python" else "nodejs20.x")
    digest, _, zip_meta = a.get(A_ZIP, "").partition(":")
    if digest == info.code_sha256 and zip_meta:  # recorded for exactly this code
        code_sha, _, size = zip_meta.partition(":")
        code_size = int(size or 0)
    else:
        code_sha, code_size = base64.b64encode(bytes.fromhex(info.code_sha256)).decode(), 0
    cfg: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": arn(region, name) + (f":{qualifier}" if qualifier else ""),
        "Runtime": runtime,
        "Role": a.get(A_ROLE, f"arn:aws:iam::{account()}:role/polyfn"),
        "Handler": spec.handler,
        "CodeSize": code_size,
        "Description": description or a.get(A_DESC, ""),
        "Timeout": max(1, round(spec.timeout)),
        "MemorySize": spec.memory,
        "LastModified": _iso(info.updated_at),
        "CodeSha256": code_sha,
        "Version": version,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": revision_id(info),
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": spec.ephemeral_storage or 512},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
    }
    if spec.env:
        cfg["Environment"] = {"Variables": dict(spec.env)}
    durable = durable_config(a)
    if durable is not None:
        cfg["DurableConfig"] = durable
    return cfg


def revision_info(info: FunctionInfo, rev: Revision) -> FunctionInfo:
    """`info` (the function) as it was at revision `rev`."""
    return FunctionInfo(name=info.name, revision=rev.number, created_at=info.created_at,
                        updated_at=rev.created_at, spec=rev.spec, code_sha256=rev.code_sha256)


class Target:
    """What a qualifier resolved to: the revision to run or show, its Lambda version, and the alias."""

    __slots__ = ("alias", "description", "info", "revision", "version")

    def __init__(self, info: FunctionInfo, revision: Revision | None, version: str, alias: Alias | None = None,
                 description: str = ""):
        self.info = info  # the function as of `revision`
        self.revision = revision  # None: the current revision ($LATEST)
        self.version = version
        self.alias = alias
        self.description = description


def alias_configuration(alias: Alias, lname: str, region: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AliasArn": f"{arn(region, lname)}:{alias.name}", "Name": alias.name, "FunctionVersion": alias.version,
        "Description": alias.description,
        "RevisionId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"polyfn-alias:{alias.function}:{alias.name}:{alias.updated_at}")),
    }
    if alias.weights:
        out["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return out


def _page(items: list[Any], q: Any, key: Any, what: str) -> tuple[list[Any], str | None]:
    """One page of `items` (sorted by `key`) after `Marker`, at most `MaxItems`; and the next marker."""
    try:
        max_items = int(q.get("MaxItems", "50"))
    except ValueError:
        raise _invalid("MaxItems must be an integer") from None
    if not 1 <= max_items <= 10000:
        raise _invalid(f"MaxItems={max_items}: must be 1..10000")
    if q.get("Marker"):
        try:
            after = base64.urlsafe_b64decode(q["Marker"].encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _invalid(f"Marker is not a marker returned by {what}") from None
        items = [i for i in items if key(i) > after]
    page = items[:max_items]
    marker = base64.urlsafe_b64encode(key(page[-1]).encode()).decode() if len(items) > max_items else None
    return page, marker


def _unknown(body: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _invalid(f"polyfn does not support {', '.join(unknown)} in {what} "
                       f"(supported: {', '.join(sorted(allowed - _IGNORED))})")


def _object(body: dict[str, Any], field: str) -> dict[str, Any]:
    """A structure parameter (`Environment`, `EphemeralStorage`): an object, or null for none."""
    value = body[field] or {}
    if not isinstance(value, dict):
        raise _invalid(f"{field} must be an object, not {type(value).__name__}")
    return value


def _spec_fields(body: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Merge Lambda configuration parameters into polyfn spec fields (`base` is the current spec)."""
    fields = dict(base)
    ann = dict(fields.get("annotations") or {})
    if "Runtime" in body:
        try:
            target = runtimes.lambda_target(str(body["Runtime"]))
        except runtimes.UnsupportedRuntime as e:
            raise _invalid(str(e)) from None
        fields.update(runtime=target.runtime, flavor=target.flavor)
        ann[A_RUNTIME] = body["Runtime"]
    if "Handler" in body:
        fields["handler"] = body["Handler"]
    if "Timeout" in body:
        if not isinstance(body["Timeout"], int) or body["Timeout"] < 1:
            raise _invalid(f"Timeout={body['Timeout']!r}: must be a positive number of seconds")
        fields["timeout"] = float(body["Timeout"])
    if "MemorySize" in body:
        if not isinstance(body["MemorySize"], int) or not 128 <= body["MemorySize"] <= 10240:
            raise _invalid(f"MemorySize={body['MemorySize']!r}: must be 128..10240 (MB)")
        fields["memory"] = body["MemorySize"]
    if "EphemeralStorage" in body:  # /tmp (polyfn's ephemeral_storage)
        size = _object(body, "EphemeralStorage").get("Size")
        if not isinstance(size, int) or not 512 <= size <= 10240:
            raise _invalid(f"EphemeralStorage.Size={size!r}: must be 512..10240 (MB)")
        fields["ephemeral_storage"] = size
    if "Environment" in body:
        env = _object(body, "Environment").get("Variables") or {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise _invalid("Environment.Variables must be a map of strings")
        fields["env"] = env
    if "Role" in body:
        ann[A_ROLE] = str(body["Role"])
    if body.get("DurableConfig") is not None:  # a durable function (lambda_durable.py)
        ann[A_DURABLE] = json.dumps(body["DurableConfig"])
    if "Description" in body:
        ann[A_DESC] = str(body["Description"])[:256]
    for k, v in (body.get("Tags") or {}).items():
        ann[A_TAG + str(k)] = str(v)
    fields["annotations"] = ann
    return fields


