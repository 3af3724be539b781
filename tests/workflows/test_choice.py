"""Every Choice comparison operator, table-tested."""

import pytest

from polyfn.workflows.choice import compile_rule, parse_timestamp
from polyfn.workflows.errors import StatesError

INPUT = {"s": "abc", "n": 5, "f": 2.5, "b": True, "t": "2026-03-14T01:59:00Z", "t2": "2026-03-14T02:00:00+01:00",
         "z": None, "other_s": "abc", "other_n": 7, "file": "log-2026.txt", "star": "a*b", "list": [1, 2]}


def rule(raw):
    return compile_rule({**raw, "Next": "X"}, "/Choices/0", top=True)


CASES = [
    ({"Variable": "$.s", "StringEquals": "abc"}, True),
    ({"Variable": "$.s", "StringEquals": "abd"}, False),
    ({"Variable": "$.n", "StringEquals": "5"}, False),  # wrong type: false, no error
    ({"Variable": "$.s", "StringEqualsPath": "$.other_s"}, True),
    ({"Variable": "$.s", "StringLessThan": "abd"}, True),
    ({"Variable": "$.s", "StringGreaterThan": "abd"}, False),
    ({"Variable": "$.s", "StringLessThanEquals": "abc"}, True),
    ({"Variable": "$.s", "StringGreaterThanEquals": "abc"}, True),
    ({"Variable": "$.s", "StringLessThanPath": "$.other_s"}, False),
    ({"Variable": "$.s", "StringGreaterThanEqualsPath": "$.other_s"}, True),
    ({"Variable": "$.s", "StringGreaterThanPath": "$.other_s"}, False),
    ({"Variable": "$.s", "StringLessThanEqualsPath": "$.other_s"}, True),
    ({"Variable": "$.file", "StringMatches": "log-*.txt"}, True),
    ({"Variable": "$.file", "StringMatches": "*.csv"}, False),
    ({"Variable": "$.star", "StringMatches": "a\\*b"}, True),
    ({"Variable": "$.s", "StringMatches": "a\\*c"}, False),
    ({"Variable": "$.n", "NumericEquals": 5}, True),
    ({"Variable": "$.f", "NumericEquals": 2.5}, True),
    ({"Variable": "$.b", "NumericEquals": 1}, False),  # booleans are not numbers
    ({"Variable": "$.n", "NumericEqualsPath": "$.other_n"}, False),
    ({"Variable": "$.n", "NumericLessThan": 6}, True),
    ({"Variable": "$.n", "NumericLessThanPath": "$.other_n"}, True),
    ({"Variable": "$.n", "NumericGreaterThan": 5}, False),
    ({"Variable": "$.n", "NumericGreaterThanPath": "$.f"}, True),
    ({"Variable": "$.n", "NumericLessThanEquals": 5}, True),
    ({"Variable": "$.n", "NumericLessThanEqualsPath": "$.f"}, False),
    ({"Variable": "$.n", "NumericGreaterThanEquals": 5}, True),
    ({"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.other_n"}, False),
    ({"Variable": "$.b", "BooleanEquals": True}, True),
    ({"Variable": "$.n", "BooleanEquals": True}, False),
    ({"Variable": "$.b", "BooleanEqualsPath": "$.b"}, True),
    ({"Variable": "$.t", "TimestampEquals": "2026-03-14T01:59:00Z"}, True),
    ({"Variable": "$.t", "TimestampEqualsPath": "$.t2"}, False),
    ({"Variable": "$.t", "TimestampLessThan": "2026-03-14T02:00:00Z"}, True),
    ({"Variable": "$.t", "TimestampLessThanPath": "$.t2"}, False),  # t2 is 01:00Z
    ({"Variable": "$.t", "TimestampGreaterThan": "2026-03-14T01:58:59.999Z"}, True),
    ({"Variable": "$.t", "TimestampGreaterThanPath": "$.t2"}, True),
    ({"Variable": "$.t", "TimestampLessThanEquals": "2026-03-14T01:59:00Z"}, True),
    ({"Variable": "$.t", "TimestampLessThanEqualsPath": "$.t"}, True),
    ({"Variable": "$.t", "TimestampGreaterThanEquals": "2026-03-14T01:59:00Z"}, True),
    ({"Variable": "$.t", "TimestampGreaterThanEqualsPath": "$.t2"}, True),
    ({"Variable": "$.s", "TimestampEquals": "2026-03-14T01:59:00Z"}, False),
    ({"Variable": "$.z", "IsNull": True}, True),
    ({"Variable": "$.n", "IsNull": True}, False),
    ({"Variable": "$.s", "IsPresent": True}, True),
    ({"Variable": "$.missing", "IsPresent": True}, False),
    ({"Variable": "$.missing", "IsPresent": False}, True),
    ({"Variable": "$.f", "IsNumeric": True}, True),
    ({"Variable": "$.b", "IsNumeric": True}, False),
    ({"Variable": "$.s", "IsString": True}, True),
    ({"Variable": "$.s", "IsString": False}, False),
    ({"Variable": "$.b", "IsBoolean": True}, True),
    ({"Variable": "$.t", "IsTimestamp": True}, True),
    ({"Variable": "$.s", "IsTimestamp": True}, False),
    ({"Variable": "$.list[1]", "NumericEquals": 2}, True),
    ({"And": [{"Variable": "$.n", "NumericEquals": 5}, {"Variable": "$.s", "StringEquals": "abc"}]}, True),
    ({"And": [{"Variable": "$.n", "NumericEquals": 5}, {"Variable": "$.s", "StringEquals": "x"}]}, False),
    ({"Or": [{"Variable": "$.n", "NumericEquals": 4}, {"Variable": "$.s", "StringEquals": "abc"}]}, True),
    ({"Not": {"Variable": "$.n", "NumericEquals": 5}}, False),
    ({"Not": {"Variable": "$.missing", "IsPresent": True}}, True),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_operators(raw, expected):
    assert rule(raw).evaluate(INPUT, {}) is expected


def test_every_operator_is_covered():
    from polyfn.workflows.choice import OPERATORS

    used = {k for raw, _ in CASES for k in raw if k != "Variable"}
    assert OPERATORS <= used | {"And", "Or", "Not"}


@pytest.mark.parametrize("raw", [{"Variable": "$.missing", "StringEquals": "a"},
                                 {"Variable": "$.s", "StringEqualsPath": "$.missing"},
                                 {"Variable": "$.missing", "IsNull": True}])
def test_a_missing_variable_is_states_runtime(raw):
    with pytest.raises(StatesError) as e:
        rule(raw).evaluate(INPUT, {})
    assert e.value.error == "States.Runtime"


@pytest.mark.parametrize(("text", "ok"), [("2026-01-01T00:00:00Z", True), ("2026-01-01T00:00:00.123456789Z", True),
                                          ("2026-01-01T00:00:00+05:30", True), ("2026-01-01t00:00:00Z", False),
                                          ("2026-01-01T00:00:00", False), ("2026-13-01T00:00:00Z", False), (5, False)])
def test_timestamps(text, ok):
    assert (parse_timestamp(text) is not None) is ok
