"""OpenWhisk's event model on the OpenWhisk API (beside openwhisk.py): packages, triggers, rules and the alarm feed.

* Packages: `PUT|GET|DELETE /api/v1/namespaces/_/packages/P`, `GET …/packages`. A package has default
  parameters (an action `P/a` gets them under its own); a binding (`binding: {namespace, name}`) is another name
  for a package with parameters of its own over the package's (`P/a` through binding `B` is `B/a`). A package
  with actions is deleted only when empty (or with `?force=true`, which deletes its actions).
* Triggers: `PUT|GET|DELETE …/triggers/T`, `GET …/triggers`, `POST …/triggers/T` fires: every *active* rule's
  action is invoked (non-blocking) with the trigger's parameters, `__ow_headers` and the payload; the answer is
  202 `{"activationId"}` and the trigger's activation records one log line per rule (`{"statusCode", "success",
  "activationId"|"error", "rule", "action"}`), as OpenWhisk does; with no active rule, 204 and no record.
* Rules: `PUT|GET|DELETE …/rules/R` (`{"trigger": "/_/T", "action": "/_/a"}`), `POST …/rules/R` with
  `{"status": "active"|"inactive"}` enables or disables, `GET …/rules`. As in OpenWhisk, a rule's status lives on
  its trigger (`trigger.rules`).
* Feeds: `wsk trigger create T --feed /whisk.system/alarms/alarm -p cron '*/5 * * * *'` invokes the feed action
  `/whisk.system/alarms/alarm` (also `alarms/interval` with `minutes`): polyfn makes it a cron trigger of its own
  (`polyfn trigger list` shows it, function `openwhisk:T`) that fires T; `lifecycleEvent` DELETE removes it.

The documents are kept by the `CompatEntities` store (store/compat.py); trigger activations go to the activation
records (function `openwhisk:T`, trigger `openwhisk-trigger`).

Namespaces: every entity belongs to the request's namespace (`namespace()`): kept under its held name
(`team-a~T`, tenancy.py; `~` is in no entity name), its document's `namespace` the OpenWhisk one (`team-a`;
`polyfn` for `default`). Another namespace's package, trigger or rule is what an absent one is (404); a rule
links a trigger and an action of its own namespace; an alarm feed's cron trigger is `team-a~openwhisk:T`
(`/v1/triggers` of team-a shows it), its activations `team-a~openwhisk:T`. `WhiskOwned` deletes a namespace's.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from polyfn.api.compat.openwhisk_compositions import component_name
from polyfn.api.compat.whisk_names import NAMESPACE, WhiskError, json_object, to_openwhisk
from polyfn.model import Activation
from polyfn.protocol import LogLine
from polyfn.tenancy import DEFAULT, qualify, split

if TYPE_CHECKING:
    from polyfn.services import Activations, CompatEntities, Triggers

PACKAGE, TRIGGER, RULE = "openwhisk.package", "openwhisk.trigger", "openwhisk.rule"  # their kinds in the store
SINK = "openwhisk"  # polyfn cron triggers with function `openwhisk:T` fire the OpenWhisk trigger T
TRIGGER_ACTIVATION = "openwhisk-trigger"  # the `trigger` field of a trigger's activation records
NOT_FOUND = "The requested resource does not exist."
NAME_RE = re.compile(r"\A[\w@.-][\w@. -]{0,255}\Z", re.ASCII)
FEEDS = ("alarms/alarm", "alarms/interval")
PACKAGE_FIELDS = {"namespace", "name", "version", "publish", "annotations", "parameters", "binding", "updated"}
TRIGGER_FIELDS = {"namespace", "name", "version", "publish", "annotations", "parameters", "limits", "updated",
                  "rules", "activationId"}
RULE_FIELDS = {"namespace", "name", "version", "publish", "annotations", "status", "trigger", "action", "updated"}

#: start one action non-blocking: (OpenWhisk action name, parameters, activation id wanted) → its activation id;
#: WhiskError when it cannot
StartAction = Callable[[str, dict[str, Any], str], Awaitable[str]]


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise WhiskError(400, "The name of the entity contains illegal characters.")
    return name


def _kv(body: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, dict) and isinstance(x.get("key"), str) for x in value):
        raise WhiskError(400, f"The request content was malformed: {key} must be a list of {{key, value}}")
    return value


def params_dict(kvs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {p["key"]: p.get("value") for p in kvs or [] if isinstance(p, dict) and "key" in p}


def _annotation(kvs: list[dict[str, Any]], key: str) -> Any:
    return next((p.get("value") for p in kvs if p.get("key") == key), None)


def _unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise WhiskError(400, f"The request content was malformed: unsupported field(s) {', '.join(unknown)}")


def _ref(value: Any, what: str) -> str:
    """A rule's trigger or action: `/_/T`, `/ns/pkg/a`, `T`, or `{"namespace"|"path", "name"}`."""
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        path = str(value.get("path") or value.get("namespace") or "")
        pkg = "/".join(path.split("/")[1:])
        return f"{pkg}/{value['name']}" if pkg else value["name"]
    if isinstance(value, str) and value.strip("/"):
        return component_name(value)
    raise WhiskError(400, f"rule requires a valid trigger and a valid action: {what} is missing")


def _path(name: str, ow: str = NAMESPACE) -> dict[str, str]:
    """`{"path", "name"}` as OpenWhisk shows a referenced entity (`pkg/a` → path `polyfn/pkg`) of OpenWhisk
    namespace `ow`."""
    pkg, _, base = name.rpartition("/")
    return {"path": f"{ow}/{pkg}" if pkg else ow, "name": base}


def _version(old: dict[str, Any] | None) -> str:
    if old is None:
        return "0.0.1"
    major, minor, patch = (old.get("version") or "0.0.0").split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


class WhiskEvents:
    def __init__(self, entities: CompatEntities | None, recorder: Activations, triggers: Triggers | None,
                 actions: Callable[[], Awaitable[dict[str, str]]], start_action: StartAction,
                 namespace: Callable[[], str] = lambda: DEFAULT, clock: Callable[[], float] = time.time,
                 enter: Callable[[str], Any] | None = None):
        self._entities = entities
        self.namespace = namespace  # the polyfn namespace of the request
        self.enter = enter  # sets it (an alarm's tick, which no request carries)
        self.recorder = recorder
        self.triggers = triggers  # polyfn's trigger manager: the alarm feed's cron triggers
        self.actions = actions  # every action there is: OpenWhisk name → version
        self.start_action = start_action
        self.clock = clock
        if triggers is not None:
            triggers.add_sink(SINK, self._alarm)

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
        doc.update(namespace=self._ow(), name=name, version=_version(old), updated=int(self.clock() * 1000))
        if not await self.entities.put(kind, self._held(name), doc, self.clock(), create=old is None):
            raise WhiskError(409, "Concurrent modification to resource detected")

    async def is_action(self, name: str) -> bool:
        """Whether `name` names an action rather than a trigger (for an activation list's `name`)."""
        return self._entities is None or await self._find(TRIGGER, name) is None

    async def _put_request(self, request: Request, kind: str, name: str,
                           fields: set[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A PUT's body (checked) and the entity it replaces (None: it creates; 409 unless `overwrite=true`)."""
        check_name(name)
        body = json_object(await request.body(), "body")
        _unknown(body, fields)
        old = await self._find(kind, name)
        if old is not None and request.query_params.get("overwrite", "false") != "true":
            raise WhiskError(409, "resource already exists")
        return body, old

    async def _actions_in(self, package: str) -> dict[str, str]:
        return {n: v for n, v in (await self.actions()).items() if n.startswith(package + "/")}

    # -- packages ----------------------------------------------------------------------------------

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
            if (kv := _kv(body, key)) is not None:
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

    # -- triggers ----------------------------------------------------------------------------------

    async def put_trigger(self, request: Request, name: str) -> Response:
        body, old = await self._put_request(request, TRIGGER, name, TRIGGER_FIELDS)
        doc = dict(old or {"publish": False, "annotations": [], "parameters": [], "limits": {}, "rules": {}})
        for key in ("parameters", "annotations"):
            if (kv := _kv(body, key)) is not None:
                doc[key] = kv
        if "publish" in body:
            doc["publish"] = bool(body["publish"])
        feed = _annotation(doc["annotations"], "feed")
        if feed is not None and not (isinstance(feed, str) and feed.strip("/")):
            raise WhiskError(400, "Feed name is not valid")
        await self._put(TRIGGER, name, doc, old)
        return JSONResponse(doc)

    async def get_trigger(self, request: Request, name: str) -> Response:
        return JSONResponse(await self._get(TRIGGER, name))

    async def list_triggers(self, request: Request, skip: int, limit: int) -> Response:
        docs = await self._list(TRIGGER)
        return JSONResponse([{k: d[k] for k in ("namespace", "name", "version", "publish", "annotations", "updated")
                              if k in d} for d in docs][skip: skip + limit])

    async def delete_trigger(self, request: Request, name: str) -> Response:
        doc = await self._get(TRIGGER, name)
        await self.entities.delete(TRIGGER, self._held(name))
        await self._drop_alarm(self._held(name))  # also when the client does not call the feed's DELETE
        return JSONResponse(doc)

    async def fire_trigger(self, request: Request, name: str) -> Response:
        payload = json_object(await request.body(), "payload")
        headers = {k: v for k, v in request.headers.items() if k not in ("authorization", "cookie")}
        aid = await self.fire(name, payload, headers, uuid.uuid4().hex)
        if aid is None:
            return Response(status_code=204)
        return JSONResponse({"activationId": aid}, status_code=202, headers={"x-openwhisk-activation-id": aid})

    async def fire(self, name: str, payload: dict[str, Any], headers: dict[str, str], aid: str) -> str | None:
        """Fire trigger `name`: every active rule's action starts; the trigger's activation (id `aid`) is recorded.
        None when no rule is active (OpenWhisk records nothing then)."""
        doc = await self._get(TRIGGER, name)
        rules: dict[str, Any] = doc.get("rules") or {}
        if not any(r.get("status") == "active" for r in rules.values()):
            return None
        start = self.clock()
        args = {**params_dict(doc.get("parameters")), "__ow_headers": headers, **payload}
        logs = []
        for rule, link in sorted(rules.items()):
            action = link["action"]
            action_name = "/".join([*action["path"].split("/")[1:], action["name"]])
            shown = f"{action['path']}/{action['name']}"
            entry: dict[str, Any] = {"statusCode": 0, "success": True, "rule": rule, "action": shown}
            if link.get("status") != "active":
                entry.update(statusCode=1, success=False,
                             error=f"Rule '{rule}' is inactive, action '{shown}' was not activated.")
            else:
                child = hashlib.sha256(f"{aid}/{rule}".encode()).hexdigest()[:32]
                try:
                    entry["activationId"] = await self.start_action(action_name, dict(args), child)
                except WhiskError as e:
                    entry.update(statusCode=3 if e.status >= 500 else 1, success=False, error=e.message)
            logs.append(LogLine(start, "stdout", json.dumps(entry, separators=(",", ":"))))
        self.recorder.record(Activation(
            id=aid, function=qualify(self.namespace(), f"{SINK}:{name}"), revision=int(doc["version"].rsplit(".", 1)[1]),
            trigger=TRIGGER_ACTIVATION, start=start, end=start, result=json.dumps(payload), logs=logs))
        return aid

    # -- rules -------------------------------------------------------------------------------------

    def _rule_json(self, doc: dict[str, Any], status: str) -> dict[str, Any]:
        ow = doc.get("namespace", NAMESPACE)
        return {**doc, "trigger": _path(doc["trigger"], ow), "action": _path(doc["action"], ow), "status": status}

    async def _status(self, doc: dict[str, Any]) -> str:
        trig = await self._find(TRIGGER, doc["trigger"])
        link = ((trig or {}).get("rules") or {}).get(f"{self._ow()}/{doc['name']}")
        return link.get("status", "inactive") if link else "inactive"

    async def _link(self, trigger: str, rule: str, action: str | None, status: str = "active") -> None:
        """Set (action given) or remove the rule's entry on its trigger."""
        trig = await self._find(TRIGGER, trigger)
        if trig is None:
            if action is None:
                return
            raise WhiskError(404, "Only rules with existing triggers can be activated")
        rules = dict(trig.get("rules") or {})
        key = f"{self._ow()}/{rule}"
        if action is None:
            rules.pop(key, None)
        else:
            rules[key] = {"action": _path(action, self._ow()), "status": status}
        trig["rules"] = rules
        await self.entities.put(TRIGGER, self._held(trigger), trig, self.clock(), create=False)

    async def put_rule(self, request: Request, name: str) -> Response:
        body, old = await self._put_request(request, RULE, name, RULE_FIELDS)
        if old is None and not (body.get("trigger") and body.get("action")):
            raise WhiskError(400, "rule requires a valid trigger and a valid action")
        trigger = _ref(body["trigger"], "trigger") if body.get("trigger") else old["trigger"]  # type: ignore[index]
        action = _ref(body["action"], "action") if body.get("action") else old["action"]  # type: ignore[index]
        if await self._find(TRIGGER, trigger) is None:
            raise WhiskError(400, f"The requested resource '{self._ow()}/{trigger}' does not exist.")
        names = await self.actions()
        if action not in names and (await self.package_params(action))[0] not in names:
            raise WhiskError(400, f"The requested resource '{self._ow()}/{action}' does not exist.")
        status = "active" if old is None else await self._status(old)
        doc = dict(old or {"publish": False, "annotations": []})
        if (kv := _kv(body, "annotations")) is not None:
            doc["annotations"] = kv
        if old is not None and old["trigger"] != trigger:
            await self._link(old["trigger"], name, None)
        doc.update(trigger=trigger, action=action)
        await self._put(RULE, name, doc, old)
        await self._link(trigger, name, action, status)
        return JSONResponse(self._rule_json(doc, status))

    async def get_rule(self, request: Request, name: str) -> Response:
        doc = await self._get(RULE, name)
        return JSONResponse(self._rule_json(doc, await self._status(doc)))

    async def list_rules(self, request: Request, skip: int, limit: int) -> Response:
        docs = await self._list(RULE)
        return JSONResponse([self._rule_json(d, await self._status(d)) for d in docs][skip: skip + limit])

    async def delete_rule(self, request: Request, name: str) -> Response:
        doc = await self._get(RULE, name)
        await self._link(doc["trigger"], name, None)
        await self.entities.delete(RULE, self._held(name))
        return JSONResponse(self._rule_json(doc, "inactive"))

    async def set_rule_state(self, request: Request, name: str) -> Response:
        status = json_object(await request.body(), "body").get("status")
        if status not in ("active", "inactive"):
            raise WhiskError(400, f"'{status}' is not a recognized rule state, must be one of ['active', 'inactive']")
        doc = await self._get(RULE, name)
        if await self._status(doc) != status:
            await self._link(doc["trigger"], name, doc["action"], status)
        return JSONResponse(self._rule_json(doc, status))

    # -- the alarm feed (/whisk.system/alarms/…) -----------------------------------------------------

    async def feed(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Invoke a feed action as `wsk trigger create/get/delete --feed` does (`lifecycleEvent`, `triggerName`)."""
        if action not in FEEDS:
            raise WhiskError(404, f"The requested resource '/whisk.system/{action}' does not exist: polyfn provides "
                                  f"the feeds {', '.join('/whisk.system/' + f for f in FEEDS)}")
        if self.triggers is None:
            raise WhiskError(503, "triggers are not running on this node")
        event = str(params.get("lifecycleEvent", "")).upper()
        trigger = component_name(str(params.get("triggerName") or ""))
        if not trigger:
            raise WhiskError(400, "the feed needs triggerName")
        if event == "DELETE":
            await self._drop_alarm(self._held(trigger))
            return {}
        if event == "READ":
            runner = self.triggers.runners.get(alarm_id(self._held(trigger)))
            if runner is None:
                raise WhiskError(404, f"trigger {trigger} has no alarm")
            return {"config": runner.trigger.config, "status": {"active": True,
                                                               "dateChanged": int(runner.trigger.created_at * 1000)}}
        if event not in ("CREATE", "UPDATE"):
            raise WhiskError(400, f"lifecycleEvent {event or '(none)'!r}: use CREATE, READ, UPDATE or DELETE")
        await self._get(TRIGGER, trigger)
        schedule = feed_schedule(action, params)
        data = params.get("trigger_payload")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                data = {"payload": data}
        config = {"schedule": schedule, "timezone": str(params.get("timezone") or "UTC"), "data": data}
        await self._drop_alarm(self._held(trigger))
        try:
            await self.triggers.create(qualify(self.namespace(), f"{SINK}:{trigger}"), "cron", config,
                                       trigger_id=alarm_id(self._held(trigger)))
        except ValueError as e:  # TriggerConfigError: the schedule or time zone
            raise WhiskError(400, str(e)) from None
        return {"status": "success", "schedule": schedule}

    async def _drop_alarm(self, trigger: str) -> None:
        """Remove the alarm of trigger `trigger` (its held name)."""
        if self.triggers is not None and alarm_id(trigger) in self.triggers.runners:
            await self.triggers.delete(alarm_id(trigger))

    async def _alarm(self, trigger: str, key: str, data: Any) -> None:
        """A cron tick of an alarm feed: fire the trigger with the feed's payload (at most once per tick)."""
        payload = data if isinstance(data, dict) else ({} if data is None else {"payload": data})
        ns, trigger = split(trigger)  # (`team-a~T`: the sink is given the held name)
        if self.enter is not None:
            self.enter(ns)
        try:
            await self.fire(trigger, payload, {}, key)
        except WhiskError as e:
            if e.status != 404:  # a trigger deleted under its alarm: nothing to fire
                raise


class WhiskOwned:
    """`TenancyOps.owned` member: a namespace's packages, triggers (with their alarms) and rules."""

    def __init__(self, entities: CompatEntities, triggers: Triggers | None):
        self.entities = entities
        self.triggers = triggers

    async def forget_namespace(self, namespace: str) -> dict[str, Any]:
        if namespace == DEFAULT:
            return {}
        n = 0
        for kind in (RULE, TRIGGER, PACKAGE):
            for doc in await self.entities.list(kind):
                if doc.get("namespace") != namespace:
                    continue
                held = qualify(namespace, doc["name"])
                n += bool(await self.entities.delete(kind, held))
                if kind == TRIGGER and self.triggers is not None and alarm_id(held) in self.triggers.runners:
                    await self.triggers.delete(alarm_id(held))
        return {"openwhisk_entities_deleted": n}


def alarm_id(held: str) -> str:
    """The polyfn trigger id of an OpenWhisk trigger's alarm (`held`: the trigger's held name; a namespace's
    alarm's id is held in it too, `team-a~ow-alarm-…`)."""
    ns, trigger = split(held)
    return qualify(ns, _alarm_id(trigger))


def _alarm_id(trigger: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", trigger.lower()).strip("-") or "x"
    digest = hashlib.sha256(trigger.encode()).hexdigest()[:6]
    return f"ow-alarm-{slug[:40]}-{digest}"


def feed_schedule(action: str, params: dict[str, Any]) -> str:
    """The polyfn cron schedule of an alarm feed's parameters. OpenWhisk's `cron` has seconds first when it has
    6 fields; polyfn's has them last."""
    if action == "alarms/interval":
        try:
            minutes = int(params.get("minutes"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise WhiskError(400, "alarms/interval needs minutes (a whole number)") from None
        if 1 <= minutes < 60 and 60 % minutes == 0:
            return f"*/{minutes} * * * *"
        if minutes % 60 == 0 and 24 % (minutes // 60) == 0 and minutes <= 1440:
            return f"0 */{minutes // 60} * * *" if minutes < 1440 else "0 0 * * *"
        raise WhiskError(400, f"minutes={minutes}: polyfn runs intervals that divide an hour (1-30) or a day "
                              "(60, 120, …, 1440) in minutes; use alarms/alarm with a cron schedule otherwise")
    cron = params.get("cron")
    if not isinstance(cron, str) or not cron.strip():
        raise WhiskError(400, "alarms/alarm needs cron (e.g. '*/5 * * * *')")
    fields = cron.split()
    if len(fields) == 6:
        fields = fields[1:] + fields[:1]
    return " ".join(fields)
