"""Pure parts of the database core: number rules, item sizes, key ordering, expressions and their errors."""

from __future__ import annotations

import base64
import random
from decimal import Decimal
from typing import Any

import pytest

from polyfn.db import evaluate, values
from polyfn.db.errors import Invalid
from polyfn.db.expr import Names, parse_condition, parse_projection, parse_update


@pytest.mark.parametrize(("text", "want"), [
    ("1.50", "1.5"), ("01", "1"), ("1E+2", "100"), ("1e2", "100"), ("-0", "0"), ("0.000", "0"), ("-1.230", "-1.23"),
    (".5", "0.5"), ("1E-130", "0." + "0" * 129 + "1"), ("9.9999999999999999999999999999999999999E+125",
                                                         "99999999999999999999999999999999999999" + "0" * 88),
    ("12345678901234567890123456789012345678", "12345678901234567890123456789012345678"),
    ("1234567890123456789012345678901234567800000", "1234567890123456789012345678901234567800000"),
])
def test_numbers_normalise_as_dynamodb_stores_them(text: str, want: str) -> None:
    assert values.norm_number(text) == want


@pytest.mark.parametrize(("text", "message"), [
    ("abc", values.NOT_A_NUMBER), ("1 ", values.NOT_A_NUMBER), ("NaN", values.NOT_A_NUMBER),
    ("Infinity", values.NOT_A_NUMBER), ("1_000", values.NOT_A_NUMBER), ("", values.NOT_A_NUMBER),
    ("123456789012345678901234567890123456789", values.TOO_PRECISE),
    ("1E+126", values.OVERFLOW), ("-1E+126", values.OVERFLOW), ("1E-131", values.UNDERFLOW),
])
def test_bad_numbers_get_dynamodbs_messages(text: str, message: str) -> None:
    with pytest.raises(Invalid) as e:
        values.norm_number(text)
    assert e.value.message == message


def test_arithmetic_keeps_38_digits() -> None:
    big = Decimal("9" * 38)
    with pytest.raises(Invalid, match="38 significant digits"):
        values.arith("+", big, Decimal("0.1"))
    assert values.num_text(values.arith("-", Decimal("0.3"), Decimal("0.1"))) == "0.2"


@pytest.mark.parametrize(("value", "error"), [
    ({}, "exactly one of the supported datatypes"), ({"S": "a", "N": "1"}, "more than one datatypes"),
    ({"NULL": False}, "Null attribute value types must have the value of true"),
    ({"SS": []}, "An string set  may not be empty"), ({"SS": ["a", "a"]}, "contains duplicates"),
    ({"NS": ["1", "1.0"]}, "contains duplicates"), ({"B": "!!"}, "base64"),
])
def test_bad_values(value: dict[str, Any], error: str) -> None:
    with pytest.raises(Invalid, match=error):
        values.check_value(value)


def test_item_size_follows_the_documented_rules() -> None:
    assert values.item_size({"a": {"S": "héllo"}}) == 1 + 6
    assert values.item_size({"n": {"N": "123"}}) == 1 + 3  # 1 byte per two digits (rounded up) + 1
    assert values.item_size({"b": {"B": base64.b64encode(b"12345").decode()}}) == 1 + 5
    assert values.item_size({"x": {"BOOL": True}, "y": {"NULL": True}}) == 4
    assert values.item_size({"l": {"L": []}}) == 1 + 3
    assert values.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1


def test_key_bytes_order_numbers_strings_and_binaries_as_dynamodb() -> None:
    rng = random.Random(7)
    nums = ["0", "-1", "1", "-1.5", "1.5", "-100", "100", "0.001", "-0.001", "1E+125", "-1E+125", "1E-130",
            "-1E-130", "12", "-12", "2", "-2", "99999999999999999999999999999999999999"]
    nums += [str(rng.uniform(-1e6, 1e6)) for _ in range(200)]
    normal = [values.norm_number(n) for n in nums]
    by_bytes = sorted(normal, key=lambda n: values.key_bytes({"N": n}))
    assert by_bytes == sorted(normal, key=Decimal)
    strs = ["", "a", "ab", "b", "é", "Z", "\U0001f600", "\uffff"]
    assert sorted(strs, key=lambda s: values.key_bytes({"S": s})) == sorted(strs, key=lambda s: s.encode())


def names(n: dict[str, str] | None = None, v: dict[str, Any] | None = None) -> Names:
    return Names(n, v, True)


ITEM = {"pk": {"S": "k"}, "n": {"N": "5"}, "s": {"S": "hello"}, "tags": {"SS": ["a", "b"]},
        "l": {"L": [{"N": "1"}, {"M": {"x": {"S": "y"}}}]}, "m": {"M": {"deep": {"N": "2"}}}, "b": {"BOOL": True}}


@pytest.mark.parametrize(("expr", "vals", "want"), [
    ("n = :v", {":v": {"N": "5.0"}}, True),
    ("n <> :v", {":v": {"N": "5"}}, False),
    ("absent <> :v", {":v": {"N": "5"}}, True),
    ("n < :v", {":v": {"S": "9"}}, False),  # different types never compare
    ("n BETWEEN :a AND :b", {":a": {"N": "1"}, ":b": {"N": "5"}}, True),
    ("s IN (:a, :b)", {":a": {"S": "x"}, ":b": {"S": "hello"}}, True),
    ("begins_with(s, :p)", {":p": {"S": "he"}}, True),
    ("contains(tags, :t)", {":t": {"S": "b"}}, True),
    ("contains(s, :t)", {":t": {"S": "ell"}}, True),
    ("contains(l, :t)", {":t": {"N": "1"}}, True),
    ("size(s) = :n", {":n": {"N": "5"}}, True),
    ("size(tags) > :n", {":n": {"N": "1"}}, True),
    ("attribute_type(n, :t)", {":t": {"S": "N"}}, True),
    ("l[1].x = :v AND m.deep = :d", {":v": {"S": "y"}, ":d": {"N": "2"}}, True),
    ("NOT n = :v OR b = :t", {":v": {"N": "5"}, ":t": {"BOOL": True}}, True),
    ("NOT (n = :v OR b = :t)", {":v": {"N": "5"}, ":t": {"BOOL": True}}, False),
    ("n = :v AND (s = :v OR b = :t)", {":v": {"N": "5"}, ":t": {"BOOL": True}}, True),
])
def test_conditions(expr: str, vals: dict[str, Any], want: bool) -> None:
    assert evaluate.check(parse_condition(expr, names(v=vals)), ITEM) is want


def test_attribute_functions_on_missing_items() -> None:
    nm = names()
    assert evaluate.check(parse_condition("attribute_not_exists(pk)", nm), None)
    assert not evaluate.check(parse_condition("attribute_exists(pk)", nm), None)


@pytest.mark.parametrize(("what", "expr", "n", "v", "error"), [
    ("c", "a = ", None, None, 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "a = "'),
    ("c", "a == :v", None, {":v": {"S": "x"}}, 'Syntax error; token: "="'),
    ("c", "status = :v", None, {":v": {"S": "x"}},
     "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status"),
    ("c", "#s = :v", None, {":v": {"S": "x"}}, "An expression attribute name used in the document path is not "
                                                "defined; attribute name: #s"),
    ("c", "a = :w", None, {":v": {"S": "x"}}, "An expression attribute value used in expression is not defined; "
                                               "attribute value: :w"),
    ("c", "ATTRIBUTE_EXISTS(a)", None, None, "Invalid function name; function: ATTRIBUTE_EXISTS"),
    ("c", "begins_with(a, :v)", None, {":v": {"N": "1"}}, "operator or function: begins_with, operand type: N"),
    ("c", "attribute_exists(:v)", None, {":v": {"N": "1"}}, "requires a document path"),
    ("c", "", None, None, "Invalid ConditionExpression: The expression can not be empty;"),
    ("u", "SET a = :v SET b = :v", None, {":v": {"N": "1"}}, 'The "SET" section can only be used once'),
    ("u", "SET a = :v REMOVE a.b", None, {":v": {"N": "1"}},
     "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path "
     "two: [a, b]"),
    ("u", "SET a = foo(:v)", None, {":v": {"N": "1"}}, "Invalid function name; function: foo"),
    ("u", "SET a", None, None, 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "SET a"'),
    ("p", "a, b[x]", None, None, 'Invalid ProjectionExpression: Syntax error; token: "x"'),
])
def test_expression_errors(what: str, expr: str, n: Any, v: Any, error: str) -> None:
    parse = {"c": parse_condition, "u": parse_update, "p": parse_projection}[what]
    with pytest.raises(Invalid) as e:
        parse(expr, names(n, v))
    assert error in e.value.message


def test_unused_names_and_values_are_refused() -> None:
    nm = names({"#a": "a", "#b": "b"}, {":v": {"N": "1"}, ":w": {"N": "2"}})
    parse_condition("#a = :v", nm)
    with pytest.raises(Invalid, match=r"ExpressionAttributeNames unused in expressions: keys: \{#b\}"):
        nm.check_unused()
    with pytest.raises(Invalid, match="ExpressionAttributeValues must not be empty"):
        Names(None, {}, True)


def test_updates_see_the_item_as_it_was() -> None:
    nm = names({"#c": "count"}, {":one": {"N": "1"}, ":z": {"N": "0"}, ":l": {"L": [{"S": "q"}]},
                                 ":s": {"SS": ["b", "c"]}, ":d": {"SS": ["a"]}, ":x": {"S": "new"}})
    u = parse_update("SET #c = if_not_exists(#c, :z) + :one, l = list_append(l, :l), m.deep = n, n = :x "
                     "REMOVE s ADD tags :s DELETE extra :d", nm)
    nm.check_unused()
    item = {**ITEM, "extra": {"SS": ["a"]}}
    out = evaluate.apply_update(u, item, ("pk",))
    assert out["count"] == {"N": "1"}
    assert out["m"] == {"M": {"deep": {"N": "5"}}}  # n before it changed
    assert out["n"] == {"S": "new"} and "s" not in out and "extra" not in out
    assert sorted(out["tags"]["SS"]) == ["a", "b", "c"]
    assert ITEM["n"] == {"N": "5"}  # the input is untouched
    with pytest.raises(Invalid, match=r"Cannot update attribute pk\. This attribute is part of the key"):
        evaluate.apply_update(parse_update("SET pk = :x", names(v={":x": {"S": "q"}})), ITEM, ("pk",))
    with pytest.raises(Invalid, match="incorrect data type"):
        evaluate.apply_update(parse_update("SET s = s + :x", names(v={":x": {"N": "1"}})), ITEM, ("pk",))
    with pytest.raises(Invalid, match="document path provided in the update expression is invalid"):
        evaluate.apply_update(parse_update("SET nope.x = :x", names(v={":x": {"N": "1"}})), ITEM, ("pk",))


def test_projection_keeps_the_items_shape() -> None:
    got = evaluate.project(ITEM, parse_projection("l[1].x, m.deep, s, nope", names()))
    assert got == {"l": {"L": [{"M": {"x": {"S": "y"}}}]}, "m": {"M": {"deep": {"N": "2"}}}, "s": {"S": "hello"}}


def test_a_remembered_expression_takes_each_requests_values_and_checks_its_unused_ones() -> None:
    """Parsed expressions are remembered: a second request with the same text and other values gets its own
    values, and the names and values the remembered parse used still count as used (or not) for it."""
    item = {"pk": {"S": "a"}, "n": {"N": "5"}}
    for limit, want in (("9", True), ("1", False), ("9", True)):
        nm = names({"#n": "n"}, {":lim": {"N": limit}})
        assert evaluate.check(parse_condition("#n < :lim", nm), item) is want
        nm.check_unused()
    nm = names({"#n": "n", "#x": "x"}, {":lim": {"N": "9"}})
    parse_condition("#n < :lim", nm)  # remembered from above, with other names this time
    with pytest.raises(Invalid, match=r"ExpressionAttributeNames unused in expressions: keys: \{#x\}"):
        nm.check_unused()
    nm = names(None, {":one": {"N": "1"}, ":extra": {"N": "2"}})
    u = parse_update("SET n = n + :one", nm)
    assert evaluate.apply_update(u, item, ("pk",))["n"] == {"N": "6"}
    with pytest.raises(Invalid, match=r"ExpressionAttributeValues unused in expressions: keys: \{:extra\}"):
        nm.check_unused()
    nm = names(None, {":one": {"N": "1"}})
    assert evaluate.apply_update(parse_update("SET n = n + :one", nm), item, ("pk",))["n"] == {"N": "6"}
    nm.check_unused()  # the update of the previous request (remembered) used :one here too
    with pytest.raises(Invalid, match="An expression attribute value used in expression is not defined"):
        parse_update("SET n = n + :one", names(None, {":two": {"N": "2"}}))


def test_a_remembered_expression_is_bound_to_each_requests_values_and_checked_again() -> None:
    """The tree is remembered per (expression, names), not per values: every node that holds a :value takes the
    request's own, and the checks that depend on a value's type run again for it (the first, valid, request's
    parse must not let an invalid one through)."""
    item = {"pk": {"S": "abc"}, "n": {"N": "5"}, "l": {"L": [{"S": "x"}]}, "tags": {"SS": ["a", "b"]},
            "prev": {"SS": ["a", "b"]}}
    cond = "begins_with(pk, :p) AND n BETWEEN :lo AND :hi AND n IN (:a, :b) AND attribute_type(n, :t)"
    for p, lo, want in (("ab", "1", True), ("zz", "1", False), ("ab", "6", False)):
        nm = names(v={":p": {"S": p}, ":lo": {"N": lo}, ":hi": {"N": "9"}, ":a": {"N": "5"}, ":b": {"N": "7"},
                      ":t": {"S": "N"}})
        assert evaluate.check(parse_condition(cond, nm), item) is want
        nm.check_unused()
    bad = {":p": {"S": "ab"}, ":lo": {"N": "1"}, ":hi": {"N": "9"}, ":a": {"N": "5"}, ":b": {"N": "7"}}
    with pytest.raises(Invalid, match="operator or function: begins_with, operand type: N"):
        parse_condition(cond, names(v={**bad, ":p": {"N": "1"}, ":t": {"S": "N"}}))
    with pytest.raises(Invalid, match="attribute_type, operand type: N"):
        parse_condition(cond, names(v={**bad, ":t": {"N": "1"}}))
    with pytest.raises(Invalid, match="Invalid attribute type name found; type: X"):
        parse_condition(cond, names(v={**bad, ":t": {"S": "X"}}))
    upd = "SET n = if_not_exists(m, :z) + :d, l = list_append(l, :l) ADD tags :add DELETE prev :del"
    for d, add in (("1", "c"), ("10", "d")):
        nm = names(v={":z": {"N": "0"}, ":d": {"N": d}, ":l": {"L": [{"S": d}]}, ":add": {"SS": [add]},
                      ":del": {"SS": ["a"]}})
        out = evaluate.apply_update(parse_update(upd, nm), item, ("pk",))
        assert out["n"] == {"N": d} and out["l"] == {"L": [{"S": "x"}, {"S": d}]}
        assert sorted(out["tags"]["SS"]) == ["a", "b", add] and out["prev"] == {"SS": ["b"]}
    assert item["n"] == {"N": "5"} and item["l"] == {"L": [{"S": "x"}]} and item["tags"] == {"SS": ["a", "b"]}
    assert item["prev"] == {"SS": ["a", "b"]}  # (top-level paths: the old item is copied shallowly, and untouched)
    big = {"pk": {"S": "k"}, "n": {"N": "99999999999999999999"}}  # (past a machine int: Decimal's arithmetic)
    got = evaluate.apply_update(parse_update("SET n = n + :d ADD m :d", names(v={":d": {"N": "-0.5"}})), big, ("pk",))
    assert got["n"] == {"N": "99999999999999999998.5"} and got["m"] == {"N": "-0.5"}
    got = evaluate.apply_update(parse_update("SET n = n - :d ADD n2 :d", names(v={":d": {"N": "7"}})),
                                {"n": {"N": "-3"}, "n2": {"N": "3"}}, ("pk",))
    assert got == {"n": {"N": "-10"}, "n2": {"N": "10"}}


def test_a_puts_one_pass_check_and_size_agree_with_check_item_and_item_size() -> None:
    """`check_item_sized` (PutItem's one pass) gives what `check_item` and `item_size` give, errors included."""
    items: list[Any] = [
        {"a": {"S": "héllo"}, "ñ": {"S": "x"}, "n": {"N": "0012.50"}, "m": {"N": "-0"}},
        {"b": {"B": base64.b64encode(b"12345").decode()}, "x": {"BOOL": True}, "y": {"NULL": True}},
        {"l": {"L": [{"S": "a"}, {"N": "1"}]}, "m": {"M": {"k": {"S": "v"}}}, "ss": {"SS": ["a", "b"]}},
        {"k": {"S": ""}}, {"s": {"S": "a", "N": "1"}}, {"n": {"N": "1e500"}}, {"n": {"N": "abc"}}, {"": {"S": "x"}},
        {"s": {"S": 1}}, {"n": {"N": 12}}, "not a map", {"NS": {"NS": ["1", "1.0"]}},
    ]
    for item in items:
        try:
            want: Any = values.check_item(item)
            want = (want, values.item_size(want))
        except Invalid as e:
            with pytest.raises(Invalid) as got:
                values.check_item_sized(item)
            assert str(got.value) == str(e)
            continue
        assert values.check_item_sized(item) == want


def test_a_plain_keys_row_key_is_the_checked_one() -> None:
    """`rows.item_key`'s shortcut for a non-empty string or a number key gives the row key of its full checks, and
    leaves every refusal (a wrong type, an empty string, a missing or too long key) to them."""
    from polyfn.db import rows
    from polyfn.db.schema import Key

    def slow(key: Key, item: dict[str, Any]) -> rows.RowKey:
        hv = rows._key_value(item, key.hash, key.hash_type)
        assert hv is not None
        pk = values.key_bytes(hv)
        sk = b""
        if key.range is not None:
            rv = rows._key_value(item, key.range, key.range_type or "S")
            assert rv is not None
            sk = values.key_bytes(rv)
        return rows.RowKey(values.segment_hash(pk), pk, sk)

    for key in (Key("pk", "S"), Key("pk", "S", "sk", "N"), Key("pk", "N", "sk", "S"),
                Key("pk", "B", "sk", "B")):
        for item in ({"pk": {"S": "a"}, "sk": {"N": "12.5"}}, {"pk": {"N": "7"}, "sk": {"S": "z"}},
                     {"pk": {"B": "AAE="}, "sk": {"B": "Ag=="}}):
            try:
                want = slow(key, item)
            except Invalid:
                with pytest.raises(Invalid):
                    rows.item_key(key, item)
                continue
            assert rows.item_key(key, item) == want
    for item, error in (({"pk": {"S": ""}, "sk": {"N": "1"}}, "cannot contain an empty string"),
                        ({"pk": {"N": "1"}, "sk": {"N": "1"}}, "Type mismatch for key pk"),
                        ({"sk": {"N": "1"}}, "Missing the key pk"), ({"pk": {"S": "a"}}, "Missing the key sk"),
                        ({"pk": {"S": "x" * 2049}, "sk": {"N": "1"}}, "Size of hashkey"),
                        ({"pk": {"S": "a"}, "sk": {"S": "1"}}, "Type mismatch for key sk")):
        with pytest.raises(Invalid, match=error):
            rows.item_key(Key("pk", "S", "sk", "N"), item)


def test_a_remembered_update_carries_its_parsed_paths() -> None:
    """An update expression parsed once and bound to each request's values (expr._bind) hands each copy the paths
    made at parsing, not a list built again per request (an UpdateItem asked for them twice)."""
    src = "SET a.b = :x, n = n + :one REMOVE r ADD s :s DELETE d :d"
    vals = {":x": {"S": "1"}, ":one": {"N": "1"}, ":s": {"SS": ["z"]}, ":d": {"SS": ["y"]}}
    first = parse_update(src, names(v=vals))
    again = parse_update(src, names(v={**vals, ":x": {"S": "2"}}))
    assert first.paths() == [("a", "b"), ("n",), ("r",), ("s",), ("d",)]
    assert again.paths() is first.paths()
    assert again.set[0][1].value == {"S": "2"}
