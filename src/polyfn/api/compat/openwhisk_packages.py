"""OpenWhisk packages on the OpenWhisk API (beside openwhisk.py and openwhisk_events.py), and the namespace-scoped
entity store both build on.

* `PUT|GET|DELETE /api/v1/namespaces/_/packages/P`, `GET …/packages`. A package has default parameters (an action
  `P/a` gets them under its own); a binding (`binding: {namespace, name}`) is another name for a package with
  parameters of its own over the package's (`P/a` through binding `B` is `B/a`). A package with actions is
  deleted only when empty (or with `?force=true`, which deletes its actions).
* `WhiskEntities`: the documents of one kind (package, trigger, rule) of the request's namespace in the
  `CompatEntities` store (store/compat.py), kept under their held names (`team-a~P`), their `namespace` the
  OpenWhisk one; another namespace's entity is what an absent one is (404).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from polyfn.api.compat.whisk_names import NAMESPACE, WhiskError, json_object, to_openwhisk
from polyfn.tenancy import DEFAULT, qualify

if TYPE_CHECKING:
    from polyfn.services import CompatEntities

PACKAGE, TRIGGER, RULE = "openwhisk.package", "openwhisk.trigger", "openwhisk.rule"  # their kinds in the store
NOT_FOUND = "The requested resource does not exist."
NAME_RE = re.compile(r"\A[\w@.-][\w@. -]{0,255}\Z", re.ASCII)
PACKAGE_FIELDS = {"namespace", "name", "version", "publish", "annotations", "parameters", "binding", "updated"}


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise WhiskError(400, "The name of the entity contains illegal characters.")
    return name


def key_values(body: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, dict) and isinstance(x.get("key"), str) for x in value):
        raise WhiskError(400, f"The request content was malformed: {key} must be a list of {{key, value}}")
    return value


def params_dict(kvs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {p["key"]: p.get("value") for p in kvs or [] if isinstance(p, dict) and "key" in p}


def annotation(kvs: list[dict[str, Any]], key: str) -> Any:
    return next((p.get("value") for p in kvs if p.get("key") == key), None)


def check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise WhiskError(400, f"The request content was malformed: unsupported field(s) {', '.join(unknown)}")


def next_version(old: dict[str, Any] | None) -> str:
    if old is None:
        return "0.0.1"
    major, minor, patch = (old.get("version") or "0.0.0").split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


class WhiskEntities:
    """The entities of one OpenWhisk API request's namespace, and the actions there are."""

    def __init__(self, entities: CompatEntities | None, actions: Callable[[], Awaitable[dict[str, str]]],
                 namespace: Callable[[], str] = lambda: DEFAULT, clock: Callable[[], float] = time.time):
        self._entities = entities
        self.namespace = namespace  # the polyfn namespace of the request
        self.actions = actions  # every action there is: OpenWhisk name → version
        self.clock = clock

    @property
    def entities(self) -> CompatEntities:
        if self._entities is None:
            raise WhiskError(503, "packages, triggers and rules are not available on this node")
        return self._entities

    def _held(self, name: str) -> str:
        """The store's name of entity `name` of the request's namespace."""
        return qualify(self.namespace(), name)

    def _ow(self) -> str:
        return to_openwhisk(self.namespace())

    async def _find(self, kind: str, name: str) -> dict[str, Any] | None:
        return await self.entities.get(kind, self._held(name))

    async def _list(self, kind: str) -> list[dict[str, Any]]:
        ow = self._ow()
        return [d for d in await self.entities.list(kind) if d.get("namespace", NAMESPACE) == ow]

    async def _get(self, kind: str, name: str) -> dict[str, Any]:
        doc = await self._find(kind, name)
        if doc is None:
            raise WhiskError(404, NOT_FOUND)
        return doc

    async def _put(self, kind: str, name: str, doc: dict[str, Any], old: dict[str, Any] | None) -> None:
        doc.update(namespace=self._ow(), name=name, version=next_version(old), updated=int(self.clock() * 1000))
        if not await self.entities.put(kind, self._held(name), doc, self.clock(), create=old is None):
            raise WhiskError(409, "Concurrent modification to resource detected")

    async def _put_request(self, request: Request, kind: str, name: str,
                           fields: set[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A PUT's body (checked) and the entity it replaces (None: it creates; 409 unless `overwrite=true`)."""
        check_name(name)
        body = json_object(await request.body(), "body")
        check_fields(body, fields)
        old = await self._find(kind, name)
        if old is not None and request.query_params.get("overwrite", "false") != "true":
            raise WhiskError(409, "resource already exists")
        return body, old


class WhiskPackages(WhiskEntities):
    """Packages and bindings; what a package gives the actions in it (`package_params`, `check_package`)."""

    async def _actions_in(self, package: str) -> dict[str, str]:
        return {n: v for n, v in (await self.actions()).items() if n.startswith(package + "/")}

    async def put_package(self, request: Request, name: str) -> Response:
        body, old = await self._put_request(request, PACKAGE, name, PACKAGE_FIELDS)
        binding = body.get("binding")
        if binding:  # `{}` is "no binding", as wsk sends it for a plain package
            if not isinstance(binding, dict) or not isinstance(binding.get("name"), str):
                raise WhiskError(400, "The request content was malformed: binding needs {namespace, name}")
            if old is not None and not old.get("binding"):
                raise WhiskError(409, "Resource is a package and cannot be converted into a binding.")
            target = await self._find(PACKAGE, binding["name"])
            if target is None:
                raise WhiskError(400, "Binding references a package that does not exist.")
            if target.get("binding"):
                raise WhiskError(400, "Cannot bind to another package binding.")
            if binding["name"] == name:
                raise WhiskError(422, f"Package binding '/{self._ow()}/{name}' contains a circular reference.")
            binding = {"namespace": self._ow(), "name": binding["name"]}
        doc = dict(old or {"publish": False, "annotations": [], "parameters": [], "binding": {}})
        for key in ("parameters", "annotations"):
            if (kv := key_values(body, key)) is not None:
                doc[key] = kv
        if "publish" in body:
            doc["publish"] = bool(body["publish"])
        if binding:
            doc["binding"] = binding
        doc["annotations"] = [a for a in doc["annotations"] if a.get("key") != "binding"]
        if doc["binding"]:  # OpenWhisk repeats the binding as an annotation (what `wsk package list` shows)
            doc["annotations"].append({"key": "binding", "value": doc["binding"]})
        await self._put(PACKAGE, name, doc, old)
        return JSONResponse(doc)

    async def get_package(self, request: Request, name: str) -> Response:
        doc = await self._get(PACKAGE, name)
        shown = dict(doc)
        source = name
        if doc.get("binding"):
            target = await self._get(PACKAGE, doc["binding"]["name"])
            source = target["name"]
            shown["parameters"] = [*target.get("parameters", []), *doc.get("parameters", [])]
        shown["actions"] = [{"name": n.rpartition("/")[2], "version": v, "annotations": []}
                            for n, v in (await self._actions_in(source)).items()]
        shown["feeds"] = []
        return JSONResponse(shown)

    async def list_packages(self, request: Request, skip: int, limit: int) -> Response:
        docs = await self._list(PACKAGE)
        return JSONResponse([{k: d[k] for k in ("namespace", "name", "version", "publish", "annotations",
                                                "binding", "updated") if k in d} for d in docs][skip: skip + limit])

    async def delete_package(self, request: Request, name: str, delete_action: Callable[[str], Awaitable[Any]]) -> Response:
        doc = await self._get(PACKAGE, name)
        if not doc.get("binding"):
            inside = await self._actions_in(name)
            if inside and request.query_params.get("force") != "true":
                n = len(inside)
                raise WhiskError(409, f"Package not empty (contains {n} {'entity' if n == 1 else 'entities'}). "
                                      "Set force param or delete package contents.")
            for action in inside:
                await delete_action(action)
        await self.entities.delete(PACKAGE, self._held(name))
        return JSONResponse(doc)

    async def package_params(self, action: str) -> tuple[str, dict[str, Any]]:
        """An action name through its package: (the name of the action itself, the package's parameters,
        a binding's over its package's). `B/a` with B a binding of P is `P/a`."""
        pkg, _, base = action.rpartition("/")
        if not pkg or self._entities is None:
            return action, {}
        doc = await self._entities.get(PACKAGE, self._held(pkg))
        if doc is None:
            return action, {}
        if not doc.get("binding"):
            return action, params_dict(doc.get("parameters"))
        target = await self._entities.get(PACKAGE, self._held(doc["binding"]["name"]))
        if target is None:
            raise WhiskError(404, NOT_FOUND)
        return f"{target['name']}/{base}", {**params_dict(target.get("parameters")), **params_dict(doc.get("parameters"))}

    async def check_package(self, action: str) -> None:
        """An action may be created in an existing package only (not in a binding)."""
        pkg = action.rpartition("/")[0]
        if not pkg or self._entities is None:
            return
        doc = await self._entities.get(PACKAGE, self._held(pkg))
        if doc is None:
            raise WhiskError(404, NOT_FOUND)
        if doc.get("binding"):
            raise WhiskError(400, "Operation not permitted on package binding.")
