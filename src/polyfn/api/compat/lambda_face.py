"""What every operation of the Lambda API (lambda_api.py) does first: verify the SigV4 signature and the key's
scope, hold the names a request carries in its key's namespace, resolve a name and qualifier (`$LATEST`, a
version, an alias) to a revision; and the steps several operations share (deploy, publish a version)."""

from __future__ import annotations

import hashlib
import random
import time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from polyfn import jsontext
from polyfn.api.compat.lambda_wire import (
    _ACTIONS,
    _SIGV4_ERRORS,
    A_NAME,
    NAMESPACE,
    LambdaError,
    Target,
    _invalid,
    account,
    arn,
    arn_account,
    configuration,
    parse_function_name,
    polyfn_name,
    revision_id,
    revision_info,
)
from polyfn.auth import sigv4
from polyfn.auth.keys import allows
from polyfn.deploy.errors import DeployError
from polyfn.model import FunctionInfo
from polyfn.store.versions import LATEST, VersionStore
from polyfn.tenancy import DEFAULT, key_namespace, local, qualify

if TYPE_CHECKING:
    from polyfn.services import Deploys, FunctionStore, Keys

_NAMESPACE = NAMESPACE  # (lambda_wire.py: the request key's namespace; its ARNs carry its account id)


def namespace() -> str:
    """The namespace of the request's key (after `LambdaFace.auth`)."""
    return _NAMESPACE.get()


class LambdaFace:
    """`store` is the metadata store whole (its engine also holds the versions and aliases); `keys` the key ring
    (SigV4 verification needs its `ensure` and signing credentials); `deployer` makes revisions."""

    def __init__(self, *, store: FunctionStore, keys: Keys, deployer: Deploys):
        self.store: Any = store
        self.keys: Any = keys
        self.deployer = deployer
        self.versions = VersionStore(self.store)

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
                              f"User: arn:aws:iam::{account()}:user/{ok.access_key_id} is not authorized to perform: "
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
        # another account's ARN (another namespace's, or no namespace's) answers exactly as an absent function,
        # before any lookup
        info = await self.store.get_function(pname) if arn_account(value) in (None, account()) else None
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
            value = jsontext.loads_text(body or b"{}")
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

    async def publish(self, info: FunctionInfo, region: str, description: str = "") -> dict[str, Any]:
        """Freeze the current revision as a version (or return the newest one, if nothing changed)."""
        done = await self.versions.publish(info.name, description)
        rev = await self.store.get_revision(info.name, done[0].revision) if done is not None else None
        if done is None or rev is None:  # deleted meanwhile
            raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {arn(region, local(info.name))}")
        v = done[0]
        return self.target_configuration(Target(revision_info(info, rev), rev, str(v.number), None, v.description),
                                         region, True)


    async def unsupported(self, request: Request, rest: str = "") -> Response:
        await self.auth(request)
        raise LambdaError(400, "UnsupportedOperationException",
                          f"polyfn does not implement {request.method} {request.url.path} of the Lambda API "
                          "(supported: Create/Get/List/Delete functions, UpdateFunctionCode, "
                          "UpdateFunctionConfiguration, Invoke, PublishVersion, ListVersionsByFunction, "
                          "Create/Get/Update/Delete/ListAliases; see docs/compat.md)")


def _pick(primary: str, weights: dict[str, float], rand: Any = random.random) -> str:
    """The version an invocation of a weighted alias runs: each extra version with its weight, else primary."""
    x = rand()
    for version, w in weights.items():
        if x < w:
            return version
        x -= w
    return primary


