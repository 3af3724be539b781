"""OpenWhisk compositions as States Language, so they run (durably) on the one engine.

* A **sequence** (`wsk action create S --sequence a,b,c`) is a chain of Tasks: each action's result is the
  next one's parameters; an action that fails ends the sequence with its error.
* A **conductor action** (an action annotated `conductor: true`) is a loop: the conductor gets the parameters and
  returns `{action, params, state}`; polyfn invokes `action` with `params`, then the conductor again with that
  result and `state` merged in (the state's fields added to the result), until the conductor returns no `action`:
  its `params` are then the composition's result.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FUNCTION = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_COMPONENTS = 50  # OpenWhisk's default action sequence limit


def sequence_definition(components: Any) -> str:
    """ASL of a sequence of polyfn functions (names already resolved)."""
    if not isinstance(components, list) or not components or not all(isinstance(c, str) for c in components):
        raise ValueError("a sequence needs a non-empty list of function names (its components)")
    if len(components) > MAX_COMPONENTS:
        raise ValueError(f"a sequence has at most {MAX_COMPONENTS} components, not {len(components)}")
    for c in components:
        if not _FUNCTION.match(c):
            raise ValueError(f"component {c!r} is not a function name")
    names = [f"{i + 1}. {c}" for i, c in enumerate(components)]
    states: dict[str, Any] = {}
    for i, (name, fn) in enumerate(zip(names, components, strict=True)):
        states[name] = {"Type": "Task", "Resource": fn, **({"Next": names[i + 1]} if i + 1 < len(names) else {"End": True})}
    return json.dumps({"Comment": "an OpenWhisk sequence", "StartAt": names[0], "States": states})


def _invoke(function: Any, payload: str) -> dict[str, Any]:
    fn = {"FunctionName": function} if isinstance(function, str) else {"FunctionName.$": function[0]}
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {**fn, "Payload.$": payload},
            "ResultSelector": {"r.$": "$.Payload"}}


def conductor_definition(conductor: str) -> str:
    """ASL of a conductor action's loop (`conductor`: the polyfn function of the conductor)."""
    if not _FUNCTION.match(conductor):
        raise ValueError(f"{conductor!r} is not a function name")
    last_segment = ("States.ArrayGetItem(States.StringSplit($.action, '/'), "
                    "States.MathAdd(States.ArrayLength(States.StringSplit($.action, '/')), -1))")
    return json.dumps({"Comment": "an OpenWhisk conductor action", "StartAt": "Conduct", "States": {
        "Conduct": {**_invoke(conductor, "$"), "OutputPath": "$.r", "Next": "Defaults"},
        "Defaults": {"Type": "Pass", "Parameters": {"v.$": "States.JsonMerge(States.StringToJson('{\"params\":{},\"state\":{}}'), $, false)"},
                     "OutputPath": "$.v", "Next": "Route"},
        "Route": {"Type": "Choice", "Choices": [{"And": [{"Variable": "$.action", "IsPresent": True},
                                                         {"Variable": "$.action", "IsString": True}], "Next": "Name"}],
                  "Default": "Done"},
        "Name": {"Type": "Pass", "Parameters": {"function.$": last_segment, "params.$": "$.params", "state.$": "$.state"},
                 "Next": "Component"},
        "Component": {**_invoke(("$.function",), "$.params"), "ResultPath": "$.result", "Next": "Merge"},
        "Merge": {"Type": "Pass", "Parameters": {"v.$": "States.JsonMerge($.result.r, $.state, false)"},
                  "OutputPath": "$.v", "Next": "Conduct"},
        "Done": {"Type": "Pass", "OutputPath": "$.params", "End": True},
    }})
