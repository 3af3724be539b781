"""Definitions are validated at creation; every problem names the state and the field."""

import json

import pytest

from polyfn.workflows.definition import parse
from polyfn.workflows.errors import DefinitionError


def machine(**states):
    first = next(iter(states))
    return {"StartAt": first, "States": states}


def problems(defn):
    with pytest.raises(DefinitionError) as e:
        parse(json.dumps(defn) if isinstance(defn, dict) else defn)
    return [str(p) for p in e.value.problems]


END = {"Type": "Succeed"}


@pytest.mark.parametrize(("defn", "expected"), [
    ("{nope", "INVALID_JSON_DESCRIPTION"),
    ({"States": {"A": END}}, "'StartAt' must name a state at /StartAt"),
    ({"StartAt": "B", "States": {"A": END}}, "Missing 'StartAt' target: B at /StartAt"),
    ({"StartAt": "A", "States": {}}, "'States' must be a non-empty object at /States"),
    (machine(A={"Type": "Pass", "Next": "Nope"}), "MISSING_TRANSITION_TARGET: Missing 'Next' target: Nope (state 'A' "
                                                  "names a state that does not exist) at /States/A/Next"),
    (machine(A={"Type": "Pass"}), "MISSING_TRANSITION_TARGET: State 'A' has neither 'Next' nor 'End'"),
    (machine(A={"Type": "Pass", "Next": "B", "End": True}, B=END), "State 'A' has both 'Next' and 'End' at /States/A/End"),
    (machine(A={"Type": "Paas", "End": True}), "State 'A' has an unknown Type 'Paas'"),
    (machine(A={"Type": "Pass", "End": True, "Reslut": 1}), "Field 'Reslut' is not supported in a Pass state at /States/A/Reslut"),
    (machine(A={"Type": "Pass", "End": True}, B=END), "UNREACHABLE_STATE: State 'B' is not reachable"),
    (machine(A={"Type": "Pass", "InputPath": "a.b", "End": True}), "INVALID_JSON_PATH: Invalid JSONPath in 'InputPath'"),
    (machine(A={"Type": "Pass", "ResultPath": "$.a[*]", "End": True}), "is not a reference path"),
    (machine(A={"Type": "Pass", "Parameters": {"x.$": "$.a["}, "End": True}), "at /States/A/Parameters/x.$"),
    (machine(A={"Type": "Pass", "Parameters": {"x.$": "States.Nope(1)"}, "End": True}), "unknown intrinsic function"),
    (machine(A={"Type": "Task", "End": True}), "Task state 'A' needs a 'Resource' at /States/A/Resource"),
    (machine(A={"Type": "Task", "Resource": "arn:aws:sqs:::nope", "End": True}), "INVALID_RESOURCE"),
    (machine(A={"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f:prod", "End": True}),
     "names version or alias 'prod'"),
    (machine(A={"Type": "Task", "Resource": "f", "TimeoutSeconds": 0, "End": True}), "TimeoutSeconds must be a positive integer"),
    (machine(A={"Type": "Task", "Resource": "f", "TimeoutSeconds": 5, "HeartbeatSeconds": 5, "End": True}),
     "HeartbeatSeconds must be smaller than TimeoutSeconds at /States/A/HeartbeatSeconds"),
    (machine(A={"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True}), "needs Parameters with 'FunctionName'"),
    (machine(A={"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "f"}, "End": True}), "needs the task token"),
    (machine(A={"Type": "Task", "Resource": "f", "End": True, "Retry": [{"ErrorEquals": []}]}),
     "ErrorEquals must be a non-empty array of error names at /States/A/Retry/0/ErrorEquals"),
    (machine(A={"Type": "Task", "Resource": "f", "End": True, "Retry": [{"ErrorEquals": ["States.ALL"]},
                                                                        {"ErrorEquals": ["X"]}]}),
     "a Retrier with States.ALL must be the last at /States/A/Retry/0/ErrorEquals"),
    (machine(A={"Type": "Task", "Resource": "f", "End": True, "Retry": [{"ErrorEquals": ["States.Tiemout"]}]}),
     "unknown error name 'States.Tiemout'"),
    (machine(A={"Type": "Task", "Resource": "f", "End": True, "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]}),
     "BackoffRate must be a number >= 1.0 at /States/A/Retry/0/BackoffRate"),
    (machine(A={"Type": "Task", "Resource": "f", "End": True, "Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}]}),
     "JitterStrategy must be FULL or NONE"),
    (machine(A={"Type": "Task", "Resource": "f", "End": True, "Catch": [{"ErrorEquals": ["X"], "Next": "Gone"}]}),
     "Missing 'Next' target: Gone (state 'A' names a state that does not exist) at /States/A/Catch/0/Next"),
    (machine(A={"Type": "Choice", "Choices": []}), "needs a non-empty 'Choices'"),
    (machine(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "B"}]}, B=END),
     "MISSING_DEFAULT: Choice state 'A' has no 'Default' and its rules can all be false"),
    (machine(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": "1", "Next": "B"}], "Default": "B"}, B=END),
     "'NumericEquals' needs a numeric value at /States/A/Choices/0/NumericEquals"),
    (machine(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "Next": "B"}], "Default": "B"}, B=END),
     "exactly one comparison operator"),
    (machine(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": "a", "BooleanEquals": True, "Next": "B"}],
                "Default": "B"}, B=END), "exactly one comparison operator, not StringEquals, BooleanEquals"),
    (machine(A={"Type": "Choice", "Choices": [{"Not": {"Variable": "$.x", "IsNull": True, "Next": "B"}, "Next": "B"}],
                "Default": "B"}, B=END), "only top-level Choice Rules may have 'Next' at /States/A/Choices/0/Not/Next"),
    (machine(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": "a"}], "Default": "B"}, B=END),
     "a Choice Rule must have 'Next' at /States/A/Choices/0"),
    (machine(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "TimestampEquals": "yesterday", "Next": "B"}],
                "Default": "B"}, B=END), "(an RFC 3339 timestamp)"),
    (machine(A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": "a", "Next": "B"}], "Default": "C"}, B=END),
     "Missing 'Default' target: C"),
    (machine(A={"Type": "Wait", "End": True}), "needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath"),
    (machine(A={"Type": "Wait", "Seconds": 1, "Timestamp": "2026-01-01T00:00:00Z", "End": True}), "(has Seconds, Timestamp)"),
    (machine(A={"Type": "Wait", "Timestamp": "2026-01-01 00:00", "End": True}), "is not an RFC 3339 timestamp"),
    (machine(A={"Type": "Wait", "Seconds": -1, "End": True}), "Seconds must be a non-negative integer"),
    (machine(A={"Type": "Parallel", "Branches": [], "End": True}), "needs a non-empty 'Branches'"),
    (machine(A={"Type": "Parallel", "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "A"}}}],
                "End": True}), "Missing 'Next' target: A (state 'X' names a state that does not exist) at "
                               "/States/A/Branches/0/States/X/Next"),
    (machine(A={"Type": "Map", "End": True}), "needs an 'ItemProcessor'"),
    (machine(A={"Type": "Map", "ItemReader": {}, "ItemProcessor": {"StartAt": "X", "States": {"X": END}}, "End": True}),
     "distributed Map"),
    (machine(A={"Type": "Map", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "X",
                                                 "States": {"X": END}}, "End": True}), "runs inline Maps only"),
    (machine(A={"Type": "Map", "ToleratedFailurePercentage": 101, "ItemProcessor": {"StartAt": "X", "States": {"X": END}},
                "End": True}), "ToleratedFailurePercentage must be a number from 0 to 100"),
    (machine(A={"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}), "Error and ErrorPath are exclusive"),
    ({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": END}}, "JSONata is not supported"),
    (machine(**{"A" * 81: END}), "must be 1 to 80 characters"),
])
def test_invalid_definitions(defn, expected):
    found = problems(defn)
    assert any(expected in p for p in found), found


def test_every_problem_is_listed():
    found = problems(machine(A={"Type": "Pass", "Next": "X"}, B={"Type": "Wait", "End": True}))
    assert len(found) == 3  # A's missing target, B's Wait without a time, B unreachable


@pytest.mark.parametrize("rules", [
    [{"Variable": "$.x", "IsPresent": True, "Next": "B"}, {"Variable": "$.x", "IsPresent": False, "Next": "B"}],
    [{"Variable": "$.x", "NumericEquals": 1, "Next": "B"},
     {"Not": {"Variable": "$.x", "NumericEquals": 1}, "Next": "B"}],
    [{"Or": [{"Variable": "$.x", "IsNull": True}, {"Variable": "$.x", "IsNull": False}], "Next": "B"}],
])
def test_a_choice_without_default_is_fine_when_its_rules_cover_every_input(rules):
    parse(json.dumps(machine(A={"Type": "Choice", "Choices": rules}, B=END)))


def test_a_valid_definition_with_every_state_type():
    m = parse(json.dumps({
        "Comment": "all types", "TimeoutSeconds": 60, "StartAt": "P",
        "States": {
            "P": {"Type": "Pass", "Result": {"a": 1}, "ResultPath": "$.r", "Next": "T"},
            "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:My_Fn:$LATEST", "Next": "C",
                  "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxDelaySeconds": 5, "JitterStrategy": "FULL"}],
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F", "ResultPath": "$.error"}]},
            "C": {"Type": "Choice", "Choices": [{"And": [{"Variable": "$.a", "NumericGreaterThanPath": "$.b"},
                                                         {"Variable": "$.s", "StringMatches": "log-*.txt"}], "Next": "W"}],
                  "Default": "Par"},
            "W": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Par"},
            "Par": {"Type": "Parallel", "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}], "Next": "M"},
            "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ItemSelector": {"v.$": "$$.Map.Item.Value"},
                  "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Y", "States": {"Y": {"Type": "Pass", "End": True}}},
                  "ResultSelector": {"n.$": "States.ArrayLength($)"}, "Next": "S"},
            "S": {"Type": "Succeed"},
            "F": {"Type": "Fail", "Error": "Failed", "Cause": "caught"},
        }}))
    assert m.timeout == 60 and m.states["T"].resource.function == "My_Fn" and m.states["T"].resource.qualifier == "$LATEST"
    assert [t for _, t in m.states["T"].transitions()] == ["C", "F"]
    assert [loc for loc, _ in m.walk()][-2:] == ["/States/S", "/States/F"]


def test_walk_finds_nested_states_and_leaves_no_reference_cycle() -> None:
    """Machine.walk recurses through a module function (a nested function calling itself is a cycle left to the
    cyclic collector); the locations name nested branches' states."""
    import gc

    m = parse(json.dumps(machine(P={"Type": "Parallel", "Branches": [machine(X=END), machine(Y=END)], "End": True})))
    gc.collect()
    gc.disable()
    try:
        assert [loc for loc, _ in m.walk()] == ["/States/P", "/States/P/Branches/0/States/X",
                                                "/States/P/Branches/1/States/Y"]
        assert gc.collect() == 0
    finally:
        gc.enable()
