"""The Lambda API's versions and aliases: PublishVersion, ListVersionsByFunction, Create/Get/Update/Delete/
ListAliases (stored by store/versions.py; an invocation's qualifier is resolved by `LambdaFace.resolve`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from polyfn.api.compat.lambda_face import LambdaFace
from polyfn.api.compat.lambda_wire import (
    _ALIAS_FIELDS,
    _ALIAS_RE,
    _PUBLISH_FIELDS,
    _VERSION_RE,
    LambdaError,
    Target,
    _invalid,
    _json,
    _object,
    _page,
    _request_id,
    _unknown,
    alias_configuration,
    arn,
    configuration,
    revision_info,
)
from polyfn.model import FunctionInfo
from polyfn.store.versions import LATEST, Alias

if TYPE_CHECKING:
    from polyfn.services import FunctionStore


def _weights(body: dict[str, Any]) -> dict[str, float]:
    """RoutingConfig.AdditionalVersionWeights: at most one other version, its weight 0.0..1.0."""
    weights = _object(body, "RoutingConfig").get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict) or len(weights) > 1:
        raise _invalid("RoutingConfig.AdditionalVersionWeights takes at most one other version")
    for k, w in weights.items():
        if not isinstance(w, int | float) or not 0.0 <= w <= 1.0:
            raise _invalid(f"RoutingConfig.AdditionalVersionWeights[{k}]={w!r}: must be 0.0..1.0")
    return {str(k): float(w) for k, w in weights.items()}


class LambdaVersions:
    def __init__(self, face: LambdaFace, *, store: FunctionStore):
        self.face = face
        self.store = store

    async def publish_version(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.face.auth(request)
        body = self.face.body_json(raw)
        _unknown(body, _PUBLISH_FIELDS, "PublishVersion")
        self.face.require(ident, "PublishVersion", self.face.pname(function_name))
        info = await self.face.find(function_name, ident.region)
        self.face.check_revision(body, info)
        want = body.get("CodeSha256")
        if want and want != configuration(info, ident.region)["CodeSha256"]:
            raise LambdaError(412, "PreconditionFailedException",
                              f"CodeSha256 ({want}) is different from current CodeSha256 in $LATEST. "
                              "Please try again with the CodeSha256 in $LATEST.")
        return _json(await self.face.publish(info, ident.region, str(body.get("Description") or "")[:256]), 201)

    async def list_versions(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.face.auth(request)
        self.face.require(ident, "ListVersionsByFunction", self.face.pname(function_name))
        info = await self.face.find(function_name, ident.region)
        entries: list[tuple[str, Target]] = [(LATEST, Target(info, None, LATEST))]  # "$" sorts before digits
        for v in await self.face.versions.list_versions(info.name):
            rev = await self.store.get_revision(info.name, v.revision)
            if rev is not None:
                entries.append((f"{v.number:010d}", Target(revision_info(info, rev), rev, str(v.number), None,
                                                            v.description)))
        page, marker = _page(entries, request.query_params, lambda e: e[0], "ListVersionsByFunction")
        out: dict[str, Any] = {"Versions": [self.face.target_configuration(t, ident.region, True) for _k, t in page]}
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
            alias.weights = _weights(body)
        lname = configuration(info, region)["FunctionName"]
        for v in (alias.version, *alias.weights):
            if v == LATEST:
                continue
            if not _VERSION_RE.fullmatch(v) or await self.face.versions.get_version(info.name, int(v)) is None:
                raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {arn(region, lname)}:{v}")
        if alias.weights:
            if alias.version == LATEST or LATEST in alias.weights:
                raise _invalid("$LATEST is not supported for an alias pointing to more than 1 version")
            if alias.version in alias.weights:
                raise _invalid(f"RoutingConfig: version {alias.version} is already the alias's FunctionVersion")
        return alias

    async def create_alias(self, request: Request, function_name: str) -> Response:
        ident, raw = await self.face.auth(request)
        body = self.face.body_json(raw)
        _unknown(body, _ALIAS_FIELDS - {"RevisionId"}, "CreateAlias")
        self.face.require(ident, "CreateAlias", self.face.pname(function_name))
        info = await self.face.find(function_name, ident.region)
        name = str(body.get("Name") or "")
        if not _ALIAS_RE.match(name):
            raise _invalid(f"Alias name {name!r} is not valid: 1-128 letters, digits, '-' or '_', "
                           "not only digits, not $LATEST")
        if "FunctionVersion" not in body:
            raise _invalid("FunctionVersion is required")
        alias = await self.alias_fields(info, body, Alias(function=info.name, name=name, version=""), ident.region)
        lname = configuration(info, ident.region)["FunctionName"]
        if not await self.face.versions.create_alias(alias):
            raise LambdaError(409, "ResourceConflictException",
                              f"Alias already exists: {arn(ident.region, lname)}:{name}")
        return _json(alias_configuration(alias, lname, ident.region), 201)

    async def get_alias(self, request: Request, function_name: str, alias_name: str) -> Response:
        ident, _ = await self.face.auth(request)
        self.face.require(ident, "GetAlias", self.face.pname(function_name))
        info, alias = await self.find_alias(function_name, alias_name, ident.region)
        return _json(alias_configuration(alias, configuration(info, ident.region)["FunctionName"], ident.region))

    async def find_alias(self, function_name: str, alias_name: str, region: str) -> tuple[FunctionInfo, Alias]:
        info = await self.face.find(function_name, region)
        alias = await self.face.versions.get_alias(info.name, alias_name)
        if alias is None:
            lname = configuration(info, region)["FunctionName"]
            raise LambdaError(404, "ResourceNotFoundException", f"Cannot find alias arn: {arn(region, lname)}:{alias_name}")
        return info, alias

    async def update_alias(self, request: Request, function_name: str, alias_name: str) -> Response:
        ident, raw = await self.face.auth(request)
        body = self.face.body_json(raw)
        _unknown(body, _ALIAS_FIELDS - {"Name"}, "UpdateAlias")
        self.face.require(ident, "UpdateAlias", self.face.pname(function_name))
        info, alias = await self.find_alias(function_name, alias_name, ident.region)
        lname = configuration(info, ident.region)["FunctionName"]
        if body.get("RevisionId") and body["RevisionId"] != alias_configuration(alias, lname, ident.region)["RevisionId"]:
            raise LambdaError(412, "PreconditionFailedException",
                              "The Revision Id provided does not match the latest Revision Id. "
                              "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
        alias = await self.alias_fields(info, body, alias, ident.region)
        if not await self.face.versions.update_alias(alias):
            raise LambdaError(404, "ResourceNotFoundException", f"Cannot find alias arn: {arn(ident.region, lname)}:{alias_name}")
        return _json(alias_configuration(alias, lname, ident.region))

    async def delete_alias(self, request: Request, function_name: str, alias_name: str) -> Response:
        ident, _ = await self.face.auth(request)
        self.face.require(ident, "DeleteAlias", self.face.pname(function_name))
        info = await self.face.find(function_name, ident.region)
        await self.face.versions.delete_alias(info.name, alias_name)  # Lambda answers 204 for a missing alias too
        return Response(status_code=204, headers={"x-amzn-RequestId": _request_id()})

    async def list_aliases(self, request: Request, function_name: str) -> Response:
        ident, _ = await self.face.auth(request)
        self.face.require(ident, "ListAliases", self.face.pname(function_name))
        info = await self.face.find(function_name, ident.region)
        lname = configuration(info, ident.region)["FunctionName"]
        version = request.query_params.get("FunctionVersion")
        items = [a for a in await self.face.versions.list_aliases(info.name)
                 if version is None or a.version == version or version in a.weights]
        page, marker = _page(items, request.query_params, lambda a: a.name, "ListAliases")
        out: dict[str, Any] = {"Aliases": [alias_configuration(a, lname, ident.region) for a in page]}
        if marker:
            out["NextMarker"] = marker
        return _json(out)
