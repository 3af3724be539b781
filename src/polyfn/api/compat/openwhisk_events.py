"""OpenWhisk's event model on the OpenWhisk API (beside openwhisk.py): triggers, rules and the alarm feed
(packages, which a rule's action may be in: openwhisk_packages.py).

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
`polyfn` for `default`; `WhiskEntities`). Another namespace's package, trigger or rule is what an absent one
is (404); a rule links a trigger and an action of its own namespace; an alarm feed's cron trigger is
`team-a~openwhisk:T` (`/v1/triggers` of team-a shows it), its activations `team-a~openwhisk:T`. `WhiskOwned`
deletes a namespace's.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from polyfn.api.compat.openwhisk_compositions import component_name
from polyfn.api.compat.openwhisk_packages import (
    PACKAGE,
    RULE,
    TRIGGER,
    WhiskEntities,
    WhiskPackages,
    annotation,
    key_values,
    params_dict,
)
from polyfn.api.compat.whisk_names import NAMESPACE, WhiskError, json_object
from polyfn.model import Activation
from polyfn.protocol import LogLine
from polyfn.tenancy import DEFAULT, qualify, split

if TYPE_CHECKING:
    from polyfn.services import Activations, CompatEntities, Triggers

SINK = "openwhisk"  # polyfn cron triggers with function `openwhisk:T` fire the OpenWhisk trigger T
TRIGGER_ACTIVATION = "openwhisk-trigger"  # the `trigger` field of a trigger's activation records
FEEDS = ("alarms/alarm", "alarms/interval")
TRIGGER_FIELDS = {"namespace", "name", "version", "publish", "annotations", "parameters", "limits", "updated",
                  "rules", "activationId"}
RULE_FIELDS = {"namespace", "name", "version", "publish", "annotations", "status", "trigger", "action", "updated"}

#: start one action non-blocking: (OpenWhisk action name, parameters, activation id wanted) → its activation id;
#: WhiskError when it cannot
StartAction = Callable[[str, dict[str, Any], str], Awaitable[str]]


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


class WhiskEvents(WhiskEntities):
    """Triggers, rules and the alarm feed of the request's namespace (a rule's action may be in a package)."""

    def __init__(self, packages: WhiskPackages, recorder: Activations, triggers: Triggers | None,
                 start_action: StartAction, enter: Callable[[str], Any] | None = None):
        super().__init__(packages._entities, packages.actions, packages.namespace, packages.clock)
        self.packages = packages
        self.enter = enter  # sets the namespace (an alarm's tick, which no request carries)
        self.recorder = recorder
        self.triggers = triggers  # polyfn's trigger manager: the alarm feed's cron triggers
        self.start_action = start_action
        if triggers is not None:
            triggers.add_sink(SINK, self._alarm)

    async def is_action(self, name: str) -> bool:
        """Whether `name` names an action rather than a trigger (for an activation list's `name`)."""
        return self._entities is None or await self._find(TRIGGER, name) is None

    # -- triggers ----------------------------------------------------------------------------------

    async def put_trigger(self, request: Request, name: str) -> Response:
        body, old = await self._put_request(request, TRIGGER, name, TRIGGER_FIELDS)
        doc = dict(old or {"publish": False, "annotations": [], "parameters": [], "limits": {}, "rules": {}})
        for key in ("parameters", "annotations"):
            if (kv := key_values(body, key)) is not None:
                doc[key] = kv
        if "publish" in body:
            doc["publish"] = bool(body["publish"])
        feed = annotation(doc["annotations"], "feed")
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
        if action not in names and (await self.packages.package_params(action))[0] not in names:
            raise WhiskError(400, f"The requested resource '{self._ow()}/{action}' does not exist.")
        status = "active" if old is None else await self._status(old)
        doc = dict(old or {"publish": False, "annotations": []})
        if (kv := key_values(body, "annotations")) is not None:
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
