"""tenancy.py: held names, which namespace a key acts in, quota parsing — table-driven."""

from __future__ import annotations

import pytest

from polyfn.store.security import KeyRecord
from polyfn.tenancy import (
    NamespaceError,
    Quotas,
    for_key,
    key_may,
    key_namespace,
    parse_quota_args,
    parse_quotas,
    qualify,
    split,
    validate,
)


@pytest.mark.parametrize(("ns", "name", "held"), [
    ("default", "hello", "hello"), ("team-a", "hello", "team-a~hello"), ("b", "x-1", "b~x-1")])
def test_held_names_round_trip(ns: str, name: str, held: str) -> None:
    assert qualify(ns, name) == held
    assert split(held) == (ns, name)


def _key(scope: str, ns: str = "default", owner: str | None = None) -> KeyRecord:
    return KeyRecord(id="K", secret_sha256="x", scope=scope, namespace=ns, owner=owner)


@pytest.mark.parametrize(("key", "requested", "acts_in"), [
    (_key("admin"), None, "default"), (_key("admin"), "team-a", "team-a"),  # the node's administrator
    (_key("deploy"), None, "default"), (_key("deploy"), "team-a", None),  # default's other keys: default only
    (_key("admin", "team-a"), None, "team-a"), (_key("admin", "team-a"), "team-b", None),
    (_key("read", "team-a"), "team-a", "team-a"), (_key("read", "team-a"), "default", None),
    (_key("invoke", "default", owner="fn"), "team-a", None),  # a default function's own key
])
def test_the_namespace_a_key_acts_in(key: KeyRecord, requested: str | None, acts_in: str | None) -> None:
    assert for_key(key, requested) == acts_in


def test_only_the_nodes_admin_reaches_every_namespaces_functions() -> None:
    assert key_namespace(_key("admin")) is None
    assert key_may(_key("admin"), "team-a~x") and key_may(_key("admin"), "x")
    assert key_may(_key("deploy", "team-a"), "team-a~x") and not key_may(_key("deploy", "team-a"), "x")
    assert not key_may(_key("deploy"), "team-a~x") and key_may(_key("deploy"), None)


@pytest.mark.parametrize("name", ["Team", "-a", "a" * 41, "a~b", "a_b", "", None, 3])
def test_bad_namespace_names(name: object) -> None:
    with pytest.raises(NamespaceError) as e:
        validate(name)
    assert e.value.code == "invalid_namespace"


def test_quotas_parse_over_a_base_and_null_lifts_one() -> None:
    q = parse_quotas({"memory_mb": 512, "invocations_per_second": 2.5})
    assert q == Quotas(memory_mb=512, invocations_per_second=2.5)
    assert parse_quotas({"memory_mb": None, "functions": 3}, q) == Quotas(functions=3, invocations_per_second=2.5)
    assert parse_quota_args(["memory-mb=256", "functions=none", "invocations_per_second=1.5"]) == {
        "memory_mb": 256, "functions": None, "invocations_per_second": 1.5}


@pytest.mark.parametrize("raw", [{"memory": 1}, {"functions": -1}, {"instances": 1.5}, {"functions": True},
                                 {"memory_mb": "1"}, [], {"invocations_per_second": -0.1}])
def test_bad_quotas(raw: object) -> None:
    with pytest.raises(NamespaceError) as e:
        parse_quotas(raw)
    assert e.value.code == "invalid_quota"
