"""Prepared item writes (db/writes.py) as plain values, without a database."""

from __future__ import annotations

import gc
import weakref

from polyfn.db import writes
from polyfn.db.schema import Key, TableDef

TABLE = TableDef(name="t", id="0" * 32, key=Key("pk", "S", "sk", "N"), attributes={"pk": "S", "sk": "N"})


def test_an_update_is_freed_without_the_cyclic_collector() -> None:
    """UpdateItem's write and its `make` do not refer to each other: freed by their reference counts when the
    request ends (a cycle per update left ~18 objects a request to the collector), its size still set."""
    req = {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "UpdateExpression": "SET n = n + :one",
           "ConditionExpression": "attribute_exists(pk)", "ExpressionAttributeValues": {":one": {"N": "1"}}}
    gc.disable()
    try:
        w = writes.prepare_update(TABLE, req)
        assert w.make is not None
        new = w.make({"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "41"}})
        assert new == {"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "42"}}
        assert w.size is not None and w.size > 0
        gone = weakref.ref(w)
        del w
        assert gone() is None
    finally:
        gc.enable()


def test_a_document_update_is_flattened_without_a_reference_cycle() -> None:
    """wxquery.flatten_update walks nested objects with a module function: a recursive closure made a cycle per
    update (the function and its own cell), left to the cyclic collector."""
    from polyfn.db import wxquery

    gc.collect()
    gc.disable()
    try:
        out = wxquery.flatten_update({"a": {"b": 1, "c": {"d": 2}}, "e": 3})
        assert out == [(("a", "b"), 1), (("a", "c", "d"), 2), (("e",), 3)]
        assert gc.collect() == 0
    finally:
        gc.enable()
