"""JSONPath as the States Language uses it: reading paths, reference paths, writing results."""

import pytest

from polyfn.workflows.errors import StatesError
from polyfn.workflows.jsonpath import PathSyntaxError, compile_path, compile_reference, set_path

DATA = {"a": {"b": [10, 20, {"c": 3}]}, "my key": 5, "items": [{"p": 5}, {"p": 15}], "x-y": 1, "n": None}
CTX = {"Execution": {"Id": "arn:e"}}


@pytest.mark.parametrize(("path", "expected"), [
    ("$", DATA),
    ("$.a.b[2].c", 3),
    ("$['my key']", 5),
    ('$["my key"]', 5),
    ("$.x-y", 1),
    ("$.a['b'][0]", 10),
    ("$.n", None),
    ("$$.Execution.Id", "arn:e"),
    ("$.items[?(@.p > 10)]", [{"p": 15}]),  # filters give the list of matches
    ("$.a.b[*]", [10, 20, {"c": 3}]),
    ("$..c", [3]),
    ("$.a.b[1:]", [20, {"c": 3}]),
    ("$.items[*].p", [5, 15]),
])
def test_get(path, expected):
    assert compile_path(path).get(DATA, CTX) == expected


@pytest.mark.parametrize("path", ["$.missing", "$.a.b[7]", "$.a.b.c", "$['nope']"])
def test_a_definite_path_that_selects_nothing_is_states_runtime(path):
    with pytest.raises(StatesError) as e:
        compile_path(path).get(DATA)
    assert e.value.error == "States.Runtime" and path in e.value.cause


def test_an_indefinite_path_that_selects_nothing_is_an_empty_list():
    assert compile_path("$.items[?(@.p > 100)]").get(DATA) == []


@pytest.mark.parametrize("bad", ["a.b", "", "$.a[", "$..", "$.a[?(@.x >)]", 5])
def test_invalid_paths(bad):
    with pytest.raises(PathSyntaxError):
        compile_path(bad)


@pytest.mark.parametrize("bad", ["$.a[*]", "$..c", "$$.Execution", "$.a[?(@.p)]"])
def test_reference_paths_are_fields_and_indices_only(bad):
    with pytest.raises(PathSyntaxError, match="reference path"):
        compile_reference(bad)


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("$", 1, 1),
    ("$.r", 1, {"a": {"b": [1, 2]}, "r": 1}),
    ("$.a.new.deep", "x", {"a": {"b": [1, 2], "new": {"deep": "x"}}}),
    ("$.a.b[1]", "y", {"a": {"b": [1, "y"]}}),
    ("$['a']['z']", None, {"a": {"b": [1, 2], "z": None}}),
])
def test_set_path_copies(path, value, expected):
    data = {"a": {"b": [1, 2]}}
    assert set_path(data, compile_reference(path), value) == expected
    assert data == {"a": {"b": [1, 2]}}  # the input is never changed


@pytest.mark.parametrize("path", ["$.a.b.c", "$.a.b[5]", "$.s.x"])
def test_set_path_into_a_non_object_fails_with_result_path_match_failure(path):
    with pytest.raises(StatesError) as e:
        set_path({"a": {"b": [1]}, "s": "str"}, compile_reference(path), 1)
    assert e.value.error == "States.ResultPathMatchFailure"


def test_set_path_leaves_no_reference_cycle() -> None:
    """set_path recurses through a module function: a nested function calling itself is a cycle (the function and
    its own cell) left to the cyclic collector on every ResultPath of every state."""
    import gc

    path = compile_reference("$.a.b[0].c")
    gc.collect()
    gc.disable()
    try:
        assert set_path({"a": {"b": [{"c": 1}]}}, path, 2) == {"a": {"b": [{"c": 2}]}}
        assert gc.collect() == 0
    finally:
        gc.enable()
