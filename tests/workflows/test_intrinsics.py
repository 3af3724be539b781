"""The intrinsic functions, with AWS's documented examples where there is one."""

import random

import pytest

from polyfn.workflows.dataflow import Template, TemplateError
from polyfn.workflows.errors import StatesError
from polyfn.workflows.intrinsics import IntrinsicSyntaxError, compile_call

DATA = {"name": "Ann", "arr": [1, 2, 2, 3], "n": 5, "s": "This.is+a,test=string", "o": {"a": 1, "b": {"c": 2}},
        "p": {"b": 3}, "id": 123456, "json": '{"x":[1,2]}', "input": "Data to hash", "splitter": ".+,="}


def ev(expr, data=DATA, seed=1):
    return compile_call(expr).evaluate(data, {"Execution": {"Id": "arn:x"}}, random.Random(seed))


@pytest.mark.parametrize(("expr", "expected"), [
    ("States.Format('Hello, my name is {}.', $.name)", "Hello, my name is Ann."),
    ("States.Format('{} and {} and {}', 1, true, null)", "1 and true and null"),
    ("States.Format('braces \\{\\} and quote \\' ok {}', $.n)", "braces {} and quote ' ok 5"),
    ("States.Format('{}', $$.Execution.Id)", "arn:x"),
    ("States.StringToJson($.json)", {"x": [1, 2]}),
    ("States.JsonToString($.o)", '{"a":1,"b":{"c":2}}'),
    ("States.Array($.id)", [123456]),
    ("States.Array()", []),
    ("States.Array('a', 1, $.o)", ["a", 1, {"a": 1, "b": {"c": 2}}]),
    ("States.ArrayPartition(States.ArrayRange(1, 7, 1), 4)", [[1, 2, 3, 4], [5, 6, 7]]),
    ("States.ArrayContains($.arr, 3)", True),
    ("States.ArrayContains($.arr, 9)", False),
    ("States.ArrayRange(1, 9, 2)", [1, 3, 5, 7, 9]),
    ("States.ArrayRange(5, 1, -2)", [5, 3, 1]),
    ("States.ArrayGetItem($.arr, 3)", 3),
    ("States.ArrayLength($.arr)", 4),
    ("States.ArrayUnique($.arr)", [1, 2, 3]),
    ("States.Base64Encode('Data to encode')", "RGF0YSB0byBlbmNvZGU="),
    ("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", "Data to encode"),
    ("States.Hash('abc', 'SHA-1')", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("States.Hash('abc', 'MD5')", "900150983cd24fb0d6963f7d28e17f72"),
    ("States.JsonMerge($.o, $.p, false)", {"a": 1, "b": 3}),
    ("States.MathAdd($.n, -7)", -2),
    ("States.StringSplit($.s, $.splitter)", ["This", "is", "a", "test", "string"]),
    ("States.StringSplit('1,2,3,4,5', ',')", ["1", "2", "3", "4", "5"]),
    ("States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit('arn:a/b.c/d', '/'), 1), '.'), 0)", "b"),
])
def test_values(expr, expected):
    assert ev(expr) == expected


def test_random_functions_draw_from_the_source_passed_in():
    assert ev("States.UUID()", seed=3) == ev("States.UUID()", seed=3)
    assert ev("States.UUID()", seed=3) != ev("States.UUID()", seed=4)
    assert len(ev("States.UUID()")) == 36 and ev("States.UUID()")[14] == "4"
    values = {ev("States.MathRandom(1, 10)", seed=s) for s in range(50)}
    assert values <= set(range(1, 10)) and len(values) > 3
    assert ev("States.MathRandom(1, 1000, 42)", seed=1) == ev("States.MathRandom(1, 1000, 42)", seed=2)  # seeded


@pytest.mark.parametrize(("expr", "message"), [
    ("States.Format('{} {}', 1)", "more '{}'"),
    ("States.Format('{}', 1, 2)", "1 '{}' for 2"),
    ("States.Format('{}', $.o)", "not objects"),
    ("States.StringToJson('{nope')", "not JSON"),
    ("States.ArrayRange(1, 5000, 1)", "at most 1000"),
    ("States.ArrayRange(1, 5, 0)", "must not be 0"),
    ("States.ArrayGetItem($.arr, 9)", "out of bounds"),
    ("States.ArrayPartition($.arr, 0)", "greater than 0"),
    ("States.ArrayLength($.name)", "must be an array"),
    ("States.Base64Decode('***')", "not base64"),
    ("States.Hash('x', 'SHA-3')", "not one of"),
    ("States.JsonMerge($.o, $.p, true)", "shallow"),
    ("States.MathAdd(1.5, 1)", "integer"),
    ("States.MathAdd(3000000000, 1)", "32-bit"),
    ("States.MathRandom(5, 5)", "less than end"),
])
def test_bad_arguments_are_intrinsic_failures(expr, message):
    with pytest.raises(StatesError) as e:
        ev(expr)
    assert e.value.error == "States.IntrinsicFailure"
    assert message in e.value.cause and expr.split("(")[0] in e.value.cause


@pytest.mark.parametrize(("expr", "message"), [
    ("States.Nope()", "unknown intrinsic function"),
    ("States.Format('x'", "missing ')'"),
    ("States.MathAdd(1)", "takes 2 argument"),
    ("States.UUID(1)", "takes 0 argument"),
    ("States.Array($.a b)", "expected ','"),
    ("States.Format('unterminated)", "unterminated"),
    ("States.Array(nonsense)", "unexpected argument"),
    ("States.Array(" * 11 + ")" * 11, "nested"),
])
def test_syntax_errors(expr, message):
    with pytest.raises(IntrinsicSyntaxError) as e:
        compile_call(expr)
    assert message in str(e.value)


def test_payload_templates():
    t = Template({"a.$": "$.name", "nested": {"c.$": "$$.Execution.Id", "list": [1, {"e.$": "$.arr[1:]"}]},
                  "fixed": "v", "f.$": "States.Format('{}!', $.name)"})
    assert t.render(DATA, {"Execution": {"Id": "arn:x"}}, random.Random(0)) == {
        "a": "Ann", "nested": {"c": "arn:x", "list": [1, {"e": [2, 2, 3]}]}, "fixed": "v", "f": "Ann!"}


def test_a_template_path_that_is_not_in_the_input_names_the_field():
    with pytest.raises(StatesError) as e:
        Template({"who.$": "$.nobody"}).render({}, {}, random.Random(0))
    assert e.value.error == "States.Runtime" and "'who.$'" in e.value.cause


@pytest.mark.parametrize(("raw", "pointer"), [
    ({"a.$": 5}, "/a.$"), ({"x": {"b.$": "nope"}}, "/x/b.$"), ({"a.$": "States.Nope()"}, "/a.$"),
    ({"a": 1, "a.$": "$"}, "/a.$"),
])
def test_bad_templates_name_the_field(raw, pointer):
    with pytest.raises(TemplateError) as e:
        Template(raw)
    assert e.value.pointer == pointer
