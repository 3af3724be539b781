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


def test_a_namespace_has_an_account_id_of_its_own_and_lambda_is_reserved() -> None:
    from polyfn.tenancy import account_id
    from polyfn.workflows import arns

    assert account_id("default") == "000000000000"
    ids = {account_id(f"team-{i}") for i in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 12 and i.isdigit() and i != "000000000000" for i in ids)
    assert account_id("team-a") == account_id("team-a")  # stable: derived from the name
    arn = arns.machine_arn("flow", namespace="team-a")
    assert arn == f"arn:aws:states:us-east-1:{account_id('team-a')}:stateMachine:flow"
    assert (arns.account_of(arn), arns.machine_name(arn)) == (account_id("team-a"), "flow")
    ex = arns.execution_arn("flow", "run-1", namespace="team-a")
    assert (arns.account_of(ex), arns.execution_name(ex)) == (account_id("team-a"), ("flow", "run-1"))
    assert arns.account_of("flow") is None and arns.machine_arn("flow").split(":")[4] == "000000000000"
    with pytest.raises(NamespaceError, match="reserved"):
        validate("lambda")


@pytest.mark.parametrize(("name", "ns", "runs"), [
    ("hello", "default", "hello"), ("hello", "team-a", "team-a~hello"),
    ("team-b~hello", "team-a", "team-a~~team-b~hello"), ("team-b~hello", "default", "default~~team-b~hello")])
def test_a_task_runs_its_machines_namespaces_function(name: str, ns: str, runs: str) -> None:
    from polyfn.workflows.engine import task_function

    assert task_function(name, ns) == runs  # (a held name from elsewhere names no function)


def test_workflow_labels_are_held_names() -> None:
    from polyfn.workflows.service import label

    assert [label("default", "flow"), label("team-a", "flow"), label("lambda", "team-a~fn"),
            label("lambda", "fn")] == ["flow", "team-a~flow", "team-a~fn", "fn"]
