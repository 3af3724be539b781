"""The Lambda API's functions: CreateFunction, GetFunction (and its code link), GetFunctionConfiguration,
ListFunctions, DeleteFunction (a version too), UpdateFunctionCode, UpdateFunctionConfiguration."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from polyfn.api.compat import common
from polyfn.api.compat.lambda_face import LambdaFace, namespace
from polyfn.api.compat.lambda_wire import (
    _CODE_FIELDS,
    _CONFIG_FIELDS,
    _CREATE_FIELDS,
    A_NAME,
    A_TAG,
    A_ZIP,
    CODE_URL_TTL,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    LambdaError,
    _invalid,
    _json,
    _page,
    _request_id,
    _spec_fields,
    _unknown,
    arn,
    configuration,
    parse_function_name,
    revision_info,
)
from polyfn.auth import sigv4
from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.manifests import runtimes
from polyfn.model import FunctionInfo, SpecError, validate_name
from polyfn.store.versions import LATEST, InUse
from polyfn.tenancy import local, owns

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import DeleteFunction, FunctionStore, LiveFunctions


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


class LambdaFunctions:
    """`admin_key` signs the code download links; `registry` drops a deleted version's pool."""

    def __init__(self, face: LambdaFace, *, settings: Settings, store: FunctionStore, registry: LiveFunctions,
                 delete_function: DeleteFunction, admin_key: str):
        self.face = face
        self.settings = settings
        self.store = store
        self.registry = registry
        self.remove_function = delete_function
        self.admin_key = admin_key

    async def create_function(self, request: Request) -> Response:
        ident, raw = await self.face.auth(request)
        body = self.face.body_json(raw)
        _unknown(body, _CREATE_FIELDS, "CreateFunction")
        for required in ("FunctionName", "Role", "Code"):
            if required not in body:
                raise _invalid(f"{required} is required")
        if body.get("PackageType", "Zip") != "Zip":
            raise _invalid("PackageType Image is not supported: polyfn runs code (Zip), not container images")
        lname, q = parse_function_name(str(body["FunctionName"]))
        if q:
            raise _invalid("FunctionName must not carry a qualifier in CreateFunction")
        pname = self.face.pname(lname)
        self.face.require(ident, "CreateFunction", pname)
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
        info = await self.face.deploy(fields, files)
        if body.get("Publish"):
            return _json(await self.face.publish(info, ident.region), 201)
        return _json(configuration(info, ident.region), 201)

    async def get_function(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.face.auth(request)
        self.face.require(ident, "GetFunction", self.face.pname(function_name))
        t = await self.face.resolve(function_name, ident.region, request.query_params.get("Qualifier"))
        info = t.info
        cfg = self.face.target_configuration(t, ident.region, _qualified(function_name, request))
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
        known = info is not None and 0 < revision < 2**63  # (a revision no column holds was a 500 from the store)
        rev = await self.store.get_revision(name, revision) if known else None
        if (info is None or rev is None or expires < time.time()
                or not sigv4.same(self._code_sig(revision_info(info, rev), expires), q.get("signature", ""))):
            raise LambdaError(403, "AccessDeniedException", "the code link is invalid or has expired")
        import asyncio

        data = await asyncio.to_thread(common.zip_code, rev.code_dir)
        return Response(data, media_type="application/zip")

    async def get_configuration(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.face.auth(request)
        self.face.require(ident, "GetFunctionConfiguration", self.face.pname(function_name))
        t = await self.face.resolve(function_name, ident.region, request.query_params.get("Qualifier"))
        return _json(self.face.target_configuration(t, ident.region, _qualified(function_name, request)))

    async def list_functions(self, request: Request) -> Response:
        ident, _ = await self.face.auth(request)
        bound = getattr(ident.key, "function", None)  # a key bound to one function lists only that one
        if not bound:
            self.face.require(ident, "ListFunctions", None)
        else:
            self.face.require(ident, "ListFunctions", bound)
        ns = namespace()
        infos = [i for i in await self.store.list_functions() if owns(ns, i.name) and (not bound or i.name == bound)]
        page, marker = _page(infos, request.query_params, lambda i: i.name, "ListFunctions")
        out: dict[str, Any] = {"Functions": [configuration(i, ident.region) for i in page]}
        if marker:
            out["NextMarker"] = marker
        return _json(out)

    async def delete_function(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.face.auth(request)
        self.face.require(ident, "DeleteFunction", self.face.pname(function_name))
        q = request.query_params.get("Qualifier") or parse_function_name(function_name)[1]
        info = await self.face.find(function_name, ident.region)
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
            v = await self.face.versions.delete_version(info.name, int(q))
        except InUse as e:
            raise LambdaError(409, "ResourceConflictException",
                              f"Unable to delete version because the following aliases reference it: {e}") from None
        if v is None:
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {arn(region, lname)}:{q}")
        if v.revision != info.revision:
            self.registry.remove_revision(info.name, v.revision)
        return Response(status_code=204, headers={"x-amzn-RequestId": _request_id()})

    async def update_code(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.face.auth(request)
        body = self.face.body_json(raw)
        _unknown(body, _CODE_FIELDS, "UpdateFunctionCode")
        self.face.require(ident, "UpdateFunctionCode", self.face.pname(function_name))
        info = await self.face.find(function_name, ident.region)
        self.face.check_revision(body, info)
        fields = {k: v for k, v in _spec_dict(info).items()}
        files = _zip_files(self.settings, body, fields)
        if body.get("DryRun"):
            return _json(configuration(info, ident.region))
        info = await self.face.deploy(fields, files)
        if body.get("Publish"):
            return _json(await self.face.publish(info, ident.region))
        return _json(configuration(info, ident.region))

    async def update_configuration(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.face.auth(request)
        body = self.face.body_json(raw)
        _unknown(body, _CONFIG_FIELDS, "UpdateFunctionConfiguration")
        self.face.require(ident, "UpdateFunctionConfiguration", self.face.pname(function_name))
        info = await self.face.find(function_name, ident.region)
        self.face.check_revision(body, info)
        fields = _spec_fields(body, _spec_dict(info))
        files = await common.current_files(self.store, info.name)
        if files is None:
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {function_name}")
        info = await self.face.deploy(fields, files)
        return _json(configuration(info, ident.region))


def _spec_dict(info: FunctionInfo) -> dict[str, Any]:
    import msgspec

    d = msgspec.structs.asdict(info.spec)
    d["env"] = dict(d["env"])
    d["annotations"] = dict(d["annotations"])
    return d


def _qualified(function_name: str, request: Request) -> bool:
    """The caller named a qualifier (the response's FunctionArn then carries it, as Lambda's does)."""
    return bool(request.query_params.get("Qualifier") or parse_function_name(function_name)[1])


