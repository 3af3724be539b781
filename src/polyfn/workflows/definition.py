"""Amazon States Language definitions: parsed and validated once, at creation, into typed states.

`parse(text)` returns a `Machine` or raises `DefinitionError` listing every problem, each with a stable code
and the location of the state and field (`MISSING_TRANSITION_TARGET: Missing 'Next' target: Nope at
/States/Start/Next`), like AWS's `InvalidDefinition`. Paths, payload templates, intrinsic functions and Choice
Rules are compiled here, so running a state never parses anything.

polyfn refuses, with a clear problem, what it would otherwise run wrongly: JSONata, distributed Map, Task
resources that are not functions or state machines, and a Choice without `Default` whose rules can all be
false (the execution could only fail there).
"""

from __future__ import annotations

import json
import re
from typing import Any

from polyfn import jsontext
from polyfn.workflows import choice
from polyfn.workflows.dataflow import Template
from polyfn.workflows.errors import DefinitionError, Problem
from polyfn.workflows.fields import ROOT, Catcher, FieldChecker, Retrier, is_int, is_positive_int
from polyfn.workflows.jsonpath import Path

MAX_DEFINITION = 1024 * 1024  # bytes (AWS's limit)
MAX_NAME = 80

_COMMON = {"Type", "Comment", "QueryLanguage"}
_IO = {"InputPath", "OutputPath"}
_FLOW = {"Next", "End"}
_RESULT = {"ResultPath", "Parameters", "ResultSelector", "Retry", "Catch"}
_FIELDS: dict[str, set[str]] = {
    "Pass": _COMMON | _IO | _FLOW | {"Result", "ResultPath", "Parameters"},
    "Task": _COMMON | _IO | _FLOW | _RESULT | {"Resource", "TimeoutSeconds", "TimeoutSecondsPath",
                                                 "HeartbeatSeconds", "HeartbeatSecondsPath", "Credentials"},
    "Choice": _COMMON | _IO | {"Choices", "Default"},
    "Wait": _COMMON | _IO | _FLOW | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": _COMMON | _IO | _FLOW | _RESULT | {"Branches"},
    "Map": _COMMON | _IO | _FLOW | _RESULT | {"Iterator", "ItemProcessor", "ItemsPath", "ItemSelector",
                                                "MaxConcurrency", "MaxConcurrencyPath", "ToleratedFailurePercentage",
                                                "ToleratedFailurePercentagePath", "ToleratedFailureCount",
                                                "ToleratedFailureCountPath", "Label"},
}
_DISTRIBUTED = {"ItemReader", "ResultWriter", "ItemBatcher"}
_LAMBDA_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]*:\d*:function:(?P<name>[A-Za-z0-9_-]{1,64})"
                         r"(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?$")
_FUNCTION_NAME = re.compile(r"^(?:function:)?(?P<name>[a-z][a-z0-9-]{0,62})$")
_INTEGRATION = re.compile(r"^arn:aws[a-zA-Z-]*:states:[a-z0-9-]*:\d*:(?P<service>lambda|states):(?P<action>invoke|startExecution)"
                          r"(?P<pattern>\.sync(?::2)?|\.waitForTaskToken)?$")


class Resource:
    """What a Task runs. `kind`: `function` (a function named in the ARN or by its polyfn name),
    `lambda:invoke` (the optimised Lambda integration: FunctionName and Payload in Parameters) or
    `states:startExecution` (a nested execution); `pattern`: "" (request-response), `.sync`, `.sync:2` or
    `.waitForTaskToken`."""

    __slots__ = ("function", "kind", "pattern", "qualifier", "text")

    def __init__(self, text: str, kind: str, function: str = "", qualifier: str = "", pattern: str = ""):
        self.text, self.kind, self.function, self.qualifier, self.pattern = text, kind, function, qualifier, pattern

    @property
    def resource_type(self) -> str:
        """`resourceType` in TaskScheduled and friends (the service)."""
        return "lambda" if self.kind in ("function", "lambda:invoke") else "states"

    @property
    def resource_name(self) -> str:
        """`resource` in TaskScheduled (the action, with its pattern)."""
        return ("invoke" if self.kind != "states:startExecution" else "startExecution") + self.pattern


def parse_resource(text: str) -> Resource | None:
    m = _LAMBDA_ARN.match(text)
    if m:
        return Resource(text, "function", m["name"], m["qualifier"] or "")
    m = _INTEGRATION.match(text)
    if m:
        kind = f"{m['service']}:{m['action']}"
        pattern = m["pattern"] or ""
        if (kind == "lambda:invoke") != (m["service"] == "lambda"):
            return None
        if kind == "lambda:invoke" and pattern.startswith(".sync"):
            return None
        return Resource(text, kind, pattern=pattern)
    m = _FUNCTION_NAME.match(text)
    if m:
        return Resource(text, "function", m["name"])
    return None


class State:
    """Fields every state type has (absent ones keep the spec's defaults)."""

    def __init__(self, name: str, raw: dict[str, Any]):
        self.name = name
        self.raw = raw
        self.type: str = raw["Type"]
        self.next: str | None = raw.get("Next")
        self.end: bool = bool(raw.get("End", False))
        self.input_path: Path | None = ROOT
        self.output_path: Path | None = ROOT
        self.result_path: Path | None = ROOT
        self.parameters: Template | None = None
        self.result_selector: Template | None = None
        self.retry: list[Retrier] = []
        self.catch: list[Catcher] = []
        # Pass
        self.result: Any = raw.get("Result")
        self.has_result = "Result" in raw
        # Task
        self.resource: Resource | None = None
        self.timeout: int | None = raw.get("TimeoutSeconds")
        self.timeout_path: Path | None = None
        self.heartbeat: int | None = raw.get("HeartbeatSeconds")
        self.heartbeat_path: Path | None = None
        # Choice
        self.choices: list[tuple[choice.Rule, str]] = []
        self.default: str | None = raw.get("Default")
        # Wait
        self.seconds: int | None = raw.get("Seconds")
        self.timestamp: str | None = raw.get("Timestamp")
        self.seconds_path: Path | None = None
        self.timestamp_path: Path | None = None
        # Fail
        self.error: str | None = raw.get("Error")
        self.cause: str | None = raw.get("Cause")
        self.error_path: Path | None = None
        self.cause_path: Path | None = None
        # Parallel / Map
        self.branches: list[Machine] = []
        self.processor: Machine | None = None
        self.items_path: Path | None = ROOT
        self.item_selector: Template | None = None
        self.max_concurrency: int = raw.get("MaxConcurrency", 0)
        self.max_concurrency_path: Path | None = None
        self.tolerated_percentage: float = raw.get("ToleratedFailurePercentage", 0)
        self.tolerated_count: int = raw.get("ToleratedFailureCount", 0)
        self.tolerated_percentage_path: Path | None = None
        self.tolerated_count_path: Path | None = None

    def __repr__(self) -> str:
        return f"<{self.type} {self.name!r}>"

    def transitions(self) -> list[tuple[str, str]]:
        """(field, target) of every edge out of this state: Next, each Choice Rule, Default, each Catcher;
        the field is where the edge is written (`Next`, `Choices/0/Next`, `Default`, `Catch/1/Next`)."""
        out: list[tuple[str, str]] = []
        if self.next:
            out.append(("Next", self.next))
        for i, (_rule, target) in enumerate(self.choices):
            out.append((f"Choices/{i}/Next", target))
        if self.default:
            out.append(("Default", self.default))
        for i, c in enumerate(self.catch):
            out.append((f"Catch/{i}/Next", c.next))
        return out


class Machine:
    """A state machine or one of its nested machines (a Parallel branch, a Map's ItemProcessor)."""

    def __init__(self, start_at: str, states: dict[str, State], comment: str = "", timeout: int | None = None):
        self.start_at = start_at
        self.states = states
        self.comment = comment
        self.timeout = timeout

    def walk(self) -> list[tuple[str, State]]:
        """Every state, nested ones included, with its location (`/States/P/Branches/0/States/A`)."""
        out: list[tuple[str, State]] = []
        _visit(self, "", out)
        return out


def _visit(m: Machine, prefix: str, out: list[tuple[str, State]]) -> None:
    """`Machine.walk`'s recursion (a module function: a nested one that calls itself is a reference cycle, left
    for the garbage collector on every walk)."""
    for name, st in m.states.items():
        loc = f"{prefix}/States/{name}"
        out.append((loc, st))
        for i, b in enumerate(st.branches):
            _visit(b, f"{loc}/Branches/{i}", out)
        if st.processor is not None:
            _visit(st.processor, f"{loc}/{'ItemProcessor' if 'ItemProcessor' in st.raw else 'Iterator'}", out)


def parse(text: str | bytes | dict[str, Any]) -> Machine:
    """Parse and validate a definition (JSON text or an already-decoded object)."""
    if isinstance(text, (str, bytes)):
        if len(text) > MAX_DEFINITION:
            raise DefinitionError([Problem("SCHEMA_VALIDATION_FAILED", "", f"the definition is {len(text)} bytes; "
                                           f"the limit is {MAX_DEFINITION}")])
        try:
            raw = jsontext.loads_text(text)
        except ValueError as e:
            raise DefinitionError([Problem("INVALID_JSON_DESCRIPTION", "", f"the definition is not JSON: {e}")]) from None
    else:
        raw = text
    v = _Validator()
    machine = v.machine(raw, "", top=True)
    if v.problems or machine is None:
        raise DefinitionError(v.problems or [Problem("SCHEMA_VALIDATION_FAILED", "", "invalid definition")])
    return machine


class _Validator(FieldChecker):
    def machine(self, raw: Any, loc: str, top: bool = False, processor: bool = False) -> Machine | None:
        if not isinstance(raw, dict):
            self.problem("SCHEMA_VALIDATION_FAILED", loc, "a state machine must be a JSON object")
            return None
        self.machine_fields(raw, loc, top, processor)
        timeout = raw.get("TimeoutSeconds")
        states_raw = raw.get("States")
        start = raw.get("StartAt")
        if not isinstance(states_raw, dict) or not states_raw:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/States", "'States' must be a non-empty object")
            return None
        states: dict[str, State] = {}
        for name, sraw in states_raw.items():
            st = self.state(name, sraw, f"{loc}/States/{name}")
            if st is not None:
                states[name] = st
        self.targets(states, states_raw, start, loc)
        if isinstance(start, str) and start in states:
            self.reachable(states, start, loc)
        return Machine(start if isinstance(start, str) else "", states, raw.get("Comment", ""), timeout)

    def machine_fields(self, raw: dict[str, Any], loc: str, top: bool, processor: bool) -> None:
        """The machine's own fields: the allowed ones (a top-level machine's, a Map processor's), the query
        language, an inline Map only, a positive TimeoutSeconds."""
        allowed = {"StartAt", "States", "Comment"} | ({"Version", "TimeoutSeconds", "QueryLanguage"} if top else set()) \
            | ({"ProcessorConfig"} if processor else set())
        for k in sorted(set(raw) - allowed):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/{k}", f"Field '{k}' is not supported")
        if raw.get("QueryLanguage", "JSONPath") != "JSONPath":
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/QueryLanguage",
                         "polyfn runs the JSONPath query language only (JSONata is not supported)")
        if processor:
            config = raw.get("ProcessorConfig") or {}
            mode = config.get("Mode", "INLINE") if isinstance(config, dict) else config
            if mode != "INLINE":
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/ProcessorConfig/Mode",
                             f"Map mode {mode!r} is not supported: polyfn runs inline Maps only")
        timeout = raw.get("TimeoutSeconds")
        if timeout is not None and not is_positive_int(timeout):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/TimeoutSeconds", "TimeoutSeconds must be a positive integer")

    def targets(self, states: dict[str, State], states_raw: dict[str, Any], start: Any, loc: str) -> None:
        """StartAt and every transition name a state of this machine."""
        if not isinstance(start, str):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/StartAt", "'StartAt' must name a state")
        elif start not in states_raw:
            self.problem("MISSING_TRANSITION_TARGET", f"{loc}/StartAt", f"Missing 'StartAt' target: {start}")
        for name, st in states.items():
            base = f"{loc}/States/{name}"
            for field, target in st.transitions():
                if not isinstance(target, str) or target not in states_raw:
                    self.problem("MISSING_TRANSITION_TARGET", f"{base}/{field}", f"Missing '{field.rsplit('/', 1)[-1]}' "
                                 f"target: {target} (state '{name}' names a state that does not exist)")

    def reachable(self, states: dict[str, State], start: str, loc: str) -> None:
        """Every state is reachable from StartAt."""
        seen = {start}
        todo = [start]
        while todo:
            st = states.get(todo.pop())
            for _label, target in st.transitions() if st else []:
                if isinstance(target, str) and target in states and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for name in states:
            if name not in seen:
                self.problem("UNREACHABLE_STATE", f"{loc}/States/{name}",
                             f"State '{name}' is not reachable from StartAt '{start}'")

    def state(self, name: str, raw: Any, loc: str) -> State | None:
        if len(name) > MAX_NAME or not name:
            self.problem("SCHEMA_VALIDATION_FAILED", loc, f"State name '{name[:100]}' must be 1 to {MAX_NAME} characters")
        if not isinstance(raw, dict):
            self.problem("SCHEMA_VALIDATION_FAILED", loc, f"State '{name}' must be a JSON object")
            return None
        kind = raw.get("Type")
        if not isinstance(kind, str) or kind not in _FIELDS:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Type", f"State '{name}' has an unknown Type {kind!r} "
                         f"(one of {', '.join(_FIELDS)})")
            return None
        self.state_fields(name, kind, raw, loc)
        st = State(name, raw)
        if kind not in ("Choice", "Succeed", "Fail"):
            self.next_or_end(st, raw, loc)
        if kind != "Fail":
            st.input_path = self.path(raw, "InputPath", loc)
            st.output_path = self.path(raw, "OutputPath", loc)
        if "ResultPath" in raw:
            st.result_path = self.path(raw, "ResultPath", loc, reference=True)
        for field, attr in (("Parameters", "parameters"), ("ResultSelector", "result_selector")):
            if field in raw:
                setattr(st, attr, self.template(raw[field], f"{loc}/{field}", object_only=field == "ResultSelector"))
        if "Retry" in raw:
            st.retry = self.retriers(raw["Retry"], f"{loc}/Retry")
        if "Catch" in raw:
            st.catch = self.catchers(raw["Catch"], f"{loc}/Catch")
        getattr(self, "state_" + kind.lower())(st, raw, loc)
        return st

    def state_fields(self, name: str, kind: str, raw: dict[str, Any], loc: str) -> None:
        """The fields a state of `kind` may have (a distributed Map's named as such), the query language."""
        for k in sorted(set(raw) - _FIELDS[kind]):
            if kind == "Map" and k in _DISTRIBUTED:
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/{k}",
                             f"Map state '{name}': '{k}' (distributed Map) is not supported; polyfn runs inline Maps")
            else:
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/{k}", f"Field '{k}' is not supported in a {kind} state")
        if raw.get("QueryLanguage", "JSONPath") != "JSONPath":
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/QueryLanguage",
                         "polyfn runs the JSONPath query language only (JSONata is not supported)")

    def next_or_end(self, st: State, raw: dict[str, Any], loc: str) -> None:
        """A state that is not terminal by its type has exactly one of Next (a name) and End (true)."""
        name = st.name
        has_next, has_end = "Next" in raw, raw.get("End") is True
        if has_next and has_end:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/End", f"State '{name}' has both 'Next' and 'End'")
        elif not has_next and not has_end:
            self.problem("MISSING_TRANSITION_TARGET", f"{loc}/Next",
                         f"State '{name}' has neither 'Next' nor 'End': add \"Next\": \"<state>\" or \"End\": true")
        if "End" in raw and not isinstance(raw["End"], bool):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/End", "'End' must be true or false")
        if has_next and not isinstance(raw["Next"], str):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Next", "'Next' must be a state name")
            st.next = None

    # -- per type -------------------------------------------------------------------------------------

    def state_pass(self, st: State, raw: dict[str, Any], loc: str) -> None:
        pass

    def state_succeed(self, st: State, raw: dict[str, Any], loc: str) -> None:
        pass

    def state_task(self, st: State, raw: dict[str, Any], loc: str) -> None:
        res = raw.get("Resource")
        if not isinstance(res, str):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Resource", f"Task state '{st.name}' needs a 'Resource'")
            return
        st.resource = parse_resource(res)
        if st.resource is None:
            self.problem("INVALID_RESOURCE", f"{loc}/Resource",
                         f"Task state '{st.name}': resource '{res}' is not one polyfn runs (a function: its name or "
                         "arn:aws:lambda:<region>:<account>:function:<name>; arn:aws:states:::lambda:invoke[.waitForTaskToken]; "
                         "arn:aws:states:::states:startExecution[.sync|.sync:2|.waitForTaskToken])")
        elif st.resource.qualifier not in ("", "$LATEST"):
            self.problem("INVALID_RESOURCE", f"{loc}/Resource",
                         f"Task state '{st.name}': '{res}' names version or alias '{st.resource.qualifier}'; polyfn's "
                         "Tasks run a function's current revision: leave the qualifier out (or use $LATEST)")
        elif st.resource.kind == "lambda:invoke":
            params = raw.get("Parameters")
            if not isinstance(params, dict) or not ({"FunctionName", "FunctionName.$"} & set(params)):
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Parameters",
                             f"Task state '{st.name}': {res} needs Parameters with 'FunctionName'")
        elif st.resource.kind == "states:startExecution":
            params = raw.get("Parameters")
            if not isinstance(params, dict) or not ({"StateMachineArn", "StateMachineArn.$"} & set(params)):
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Parameters",
                             f"Task state '{st.name}': {res} needs Parameters with 'StateMachineArn'")
        if st.resource is not None and st.resource.pattern == ".waitForTaskToken":
            if "$$.Task.Token" not in json.dumps(raw.get("Parameters")):
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Parameters", f"Task state '{st.name}': "
                             ".waitForTaskToken needs the task token in its Parameters (a field \"…\": \"$$.Task.Token\" "
                             "with a key ending in '.$')")
        for field in ("TimeoutSeconds", "HeartbeatSeconds"):
            if field in raw and not is_positive_int(raw[field]):
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/{field}", f"{field} must be a positive integer")
            if field in raw and field + "Path" in raw:
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/{field}Path", f"{field} and {field}Path are exclusive")
        st.timeout_path = self.path(raw, "TimeoutSecondsPath", loc, absent=None)
        st.heartbeat_path = self.path(raw, "HeartbeatSecondsPath", loc, absent=None)
        if is_positive_int(st.timeout) and is_positive_int(st.heartbeat) and st.heartbeat >= st.timeout:  # type: ignore[operator]
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/HeartbeatSeconds",
                         "HeartbeatSeconds must be smaller than TimeoutSeconds")

    def state_choice(self, st: State, raw: dict[str, Any], loc: str) -> None:
        rules = raw.get("Choices")
        if not isinstance(rules, list) or not rules:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Choices", f"Choice state '{st.name}' needs a non-empty 'Choices'")
            return
        for i, r in enumerate(rules):
            try:
                rule = choice.compile_rule(r, f"{loc}/Choices/{i}", top=True)
            except choice.RuleError as e:
                self.problem("SCHEMA_VALIDATION_FAILED", e.pointer, f"Choice state '{st.name}': {e.message}")
                continue
            st.choices.append((rule, r["Next"]))
        if "Default" in raw and not isinstance(raw["Default"], str):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Default", "'Default' must be a state name")
            st.default = None
        if st.default is None and len(st.choices) == len(rules) and not choice.exhaustive([r for r, _ in st.choices]):
            self.problem("MISSING_DEFAULT", f"{loc}/Default",
                         f"Choice state '{st.name}' has no 'Default' and its rules can all be false, where the execution "
                         "would fail with States.NoChoiceMatched: add \"Default\": \"<state>\"")

    def state_wait(self, st: State, raw: dict[str, Any], loc: str) -> None:
        given = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in raw]
        if len(given) != 1:
            self.problem("SCHEMA_VALIDATION_FAILED", loc, f"Wait state '{st.name}' needs exactly one of Seconds, "
                         f"Timestamp, SecondsPath, TimestampPath" + (f" (has {', '.join(given)})" if given else ""))
        if "Seconds" in raw and not (is_int(raw["Seconds"]) and raw["Seconds"] >= 0):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Seconds", "Seconds must be a non-negative integer")
        if "Timestamp" in raw and choice.parse_timestamp(raw["Timestamp"]) is None:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Timestamp",
                         f"Timestamp {raw['Timestamp']!r} is not an RFC 3339 timestamp (2026-01-01T00:00:00Z)")
        st.seconds_path = self.path(raw, "SecondsPath", loc, absent=None)
        st.timestamp_path = self.path(raw, "TimestampPath", loc, absent=None)

    def state_fail(self, st: State, raw: dict[str, Any], loc: str) -> None:
        for field in ("Error", "Cause"):
            if field in raw and field + "Path" in raw:
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/{field}Path", f"{field} and {field}Path are exclusive")
            if field in raw and not isinstance(raw[field], str):
                self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/{field}", f"{field} must be a string")
        st.error_path = self.path_or_intrinsic(raw, "ErrorPath", loc)
        st.cause_path = self.path_or_intrinsic(raw, "CausePath", loc)

    def state_parallel(self, st: State, raw: dict[str, Any], loc: str) -> None:
        branches = raw.get("Branches")
        if not isinstance(branches, list) or not branches:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Branches", f"Parallel state '{st.name}' needs a non-empty 'Branches'")
            return
        for i, b in enumerate(branches):
            m = self.machine(b, f"{loc}/Branches/{i}")
            if m is not None:
                st.branches.append(m)

    def state_map(self, st: State, raw: dict[str, Any], loc: str) -> None:
        field = "ItemProcessor" if "ItemProcessor" in raw else "Iterator"
        if field not in raw:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/ItemProcessor", f"Map state '{st.name}' needs an 'ItemProcessor'")
        else:
            st.processor = self.machine(raw[field], f"{loc}/{field}", processor=True)
        if "ItemProcessor" in raw and "Iterator" in raw:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Iterator", "'Iterator' and 'ItemProcessor' are exclusive")
        st.items_path = self.path(raw, "ItemsPath", loc)
        if "ItemSelector" in raw and "Parameters" in raw:
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/Parameters", "'Parameters' and 'ItemSelector' are exclusive")
        if "ItemSelector" in raw:
            st.item_selector = self.template(raw["ItemSelector"], f"{loc}/ItemSelector", object_only=True)
        elif st.parameters is not None:  # the older name of ItemSelector
            st.item_selector, st.parameters = st.parameters, None
        if "MaxConcurrency" in raw and not (is_int(raw["MaxConcurrency"]) and raw["MaxConcurrency"] >= 0):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/MaxConcurrency", "MaxConcurrency must be a non-negative integer")
        pct = raw.get("ToleratedFailurePercentage", 0)
        if not (isinstance(pct, (int, float)) and not isinstance(pct, bool) and 0 <= pct <= 100):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/ToleratedFailurePercentage",
                         "ToleratedFailurePercentage must be a number from 0 to 100")
        if "ToleratedFailureCount" in raw and not (is_int(raw["ToleratedFailureCount"]) and raw["ToleratedFailureCount"] >= 0):
            self.problem("SCHEMA_VALIDATION_FAILED", f"{loc}/ToleratedFailureCount",
                         "ToleratedFailureCount must be a non-negative integer")
        st.max_concurrency_path = self.path(raw, "MaxConcurrencyPath", loc, absent=None)
        st.tolerated_percentage_path = self.path(raw, "ToleratedFailurePercentagePath", loc, absent=None)
        st.tolerated_count_path = self.path(raw, "ToleratedFailureCountPath", loc, absent=None)


