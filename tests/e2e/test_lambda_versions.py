"""Lambda versions and aliases with the real boto3 client against a real `polyfn serve`: publish, list,
qualified Get/Invoke/Delete, aliases (weighted too), their errors, and that all of it survives a restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import Server, start_server, wait_until
from .test_lambda_api import ROLE, zip_of


def code(version: str) -> bytes:
    return zip_of({"lambda_function.py": f"def lambda_handler(event, context):\n    return {{'v': '{version}'}}\n"})


def client(server: Server) -> Any:
    return boto3.client(
        "lambda", endpoint_url=server.url, region_name="eu-west-1", aws_access_key_id="polyfn-admin",
        aws_secret_access_key=server.key, config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


def ran(lam: Any, qualifier: str | None = None, name: str = "ver") -> tuple[str, str]:
    """(the code version that answered, X-Amz-Executed-Version)"""
    kw = {"Qualifier": qualifier} if qualifier else {}
    r = lam.invoke(FunctionName=name, Payload=b"{}", **kw)
    assert "FunctionError" not in r, r["Payload"].read()
    return json.loads(r["Payload"].read())["v"], r["ExecutedVersion"]


def error(call: Any, **kw: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as e:
        call(**kw)
    r = e.value.response
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == r["Error"]["Code"]
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


@pytest.fixture
def srv(tmp_path: Path) -> Any:
    holder = {"server": start_server(tmp_path / "data")}
    yield holder
    holder["server"].stop(signal.SIGKILL)


def test_versions_aliases_invoke_and_restart(srv: dict[str, Server], tmp_path: Path) -> None:
    server = srv["server"]
    lam = client(server)
    created = lam.create_function(FunctionName="ver", Runtime="python3.12", Role=ROLE, Publish=True,
                                  Handler="lambda_function.lambda_handler", Code={"ZipFile": code("one")})
    assert created["Version"] == "1" and created["FunctionArn"].endswith(":function:ver:1")
    again = lam.publish_version(FunctionName="ver")  # nothing changed: the same version, as Lambda does
    assert again["Version"] == "1" and again["CodeSha256"] == created["CodeSha256"]

    updated = lam.update_function_code(FunctionName="ver", ZipFile=code("two"))
    assert updated["Version"] == "$LATEST"
    v2 = lam.publish_version(FunctionName="ver", Description="second")
    assert v2["Version"] == "2" and v2["Description"] == "second" and v2["CodeSha256"] == updated["CodeSha256"]
    assert v2["CodeSha256"] != created["CodeSha256"]
    v3 = lam.update_function_code(FunctionName="ver", ZipFile=code("three"), Publish=True)
    assert v3["Version"] == "3"

    listed = [v["Version"] for page in lam.get_paginator("list_versions_by_function").paginate(
        FunctionName="ver", PaginationConfig={"PageSize": 1}) for v in page["Versions"]]
    assert listed == ["$LATEST", "1", "2", "3"]

    cfg1 = lam.get_function(FunctionName="ver", Qualifier="1")
    assert cfg1["Configuration"]["Version"] == "1" and cfg1["Configuration"]["CodeSha256"] == created["CodeSha256"]
    assert cfg1["Configuration"]["FunctionArn"].endswith(":ver:1")
    assert b"'one'" in httpx.get(cfg1["Code"]["Location"]).content  # the version's own code, zipped
    assert lam.get_function_configuration(FunctionName="ver:2")["Version"] == "2"
    assert lam.get_function_configuration(FunctionName="ver")["Version"] == "$LATEST"

    assert ran(lam) == ("three", "$LATEST")
    assert ran(lam, "$LATEST") == ("three", "$LATEST")
    assert ran(lam, "1") == ("one", "1")
    assert ran(lam, "2") == ("two", "2")
    # a non-current revision runs in its own pool: its instance is listed with its revision
    insts = server.api.get("/v1/functions/ver/instances").json()["instances"]
    assert {i["revision"] for i in insts} >= {1, 3}

    alias = lam.create_alias(FunctionName="ver", Name="prod", FunctionVersion="1", Description="live")
    assert alias["AliasArn"].endswith(":function:ver:prod") and alias["FunctionVersion"] == "1"
    assert ran(lam, "prod") == ("one", "1")
    assert lam.get_function_configuration(FunctionName="ver", Qualifier="prod")["FunctionArn"].endswith(":ver:prod")
    assert error(lam.create_alias, FunctionName="ver", Name="prod", FunctionVersion="2")[:2] == \
        ("ResourceConflictException", 409)
    for bad in ("123", "bad.name", "$LATEST"):
        assert error(lam.create_alias, FunctionName="ver", Name=bad, FunctionVersion="1")[0] == \
            "InvalidParameterValueException"
    assert error(lam.create_alias, FunctionName="ver", Name="x", FunctionVersion="9")[:2] == \
        ("ResourceNotFoundException", 404)
    assert error(lam.delete_function, FunctionName="ver", Qualifier="1")[:2] == ("ResourceConflictException", 409)
    assert error(lam.delete_function, FunctionName="ver", Qualifier="$LATEST")[0] == "InvalidParameterValueException"

    moved = lam.update_alias(FunctionName="ver", Name="prod", FunctionVersion="2", RevisionId=alias["RevisionId"])
    assert moved["FunctionVersion"] == "2" and moved["Description"] == "live"
    assert error(lam.update_alias, FunctionName="ver", Name="prod", FunctionVersion="1",
                 RevisionId=alias["RevisionId"])[:2] == ("PreconditionFailedException", 412)
    assert ran(lam, "prod") == ("two", "2")
    # an `Event` invoke of an alias goes through the durable queue pinned to the alias's version
    queued = lam.invoke(FunctionName="ver", Qualifier="prod", InvocationType="Event", Payload=b"{}")
    assert queued["StatusCode"] == 202
    aid = queued["ResponseMetadata"]["RequestId"].replace("-", "")
    assert wait_until(lambda: (server.api.get(f"/v1/activations/{aid}").json().get("status") == "success"), 30)
    act = server.activation(aid)
    assert json.loads(act["result"]) == {"v": "two"} and act["revision"] != 3  # not $LATEST's code
    lam.create_alias(FunctionName="ver", Name="old", FunctionVersion="1")
    lam.create_alias(FunctionName="ver", Name="latest", FunctionVersion="$LATEST")
    names = [a["Name"] for p in lam.get_paginator("list_aliases").paginate(
        FunctionName="ver", PaginationConfig={"PageSize": 2}) for a in p["Aliases"]]
    assert names == ["latest", "old", "prod"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName="ver", FunctionVersion="1")["Aliases"]] == ["old"]

    for q in ("7", "nope"):  # unknown version, unknown alias
        code_, status, _ = error(lam.invoke, FunctionName="ver", Qualifier=q)
        assert (code_, status) == ("ResourceNotFoundException", 404)
        assert error(lam.get_function, FunctionName="ver", Qualifier=q)[0] == "ResourceNotFoundException"

    # a restart keeps versions and aliases
    server.stop()
    server = srv["server"] = start_server(server.data_dir)
    lam = client(server)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="ver")["Versions"]] == \
        ["$LATEST", "1", "2", "3"]
    assert lam.get_alias(FunctionName="ver", Name="prod")["FunctionVersion"] == "2"
    assert ran(lam, "prod") == ("two", "2")
    assert ran(lam, "old") == ("one", "1")
    assert ran(lam, "latest") == ("three", "$LATEST")

    lam.delete_alias(FunctionName="ver", Name="old")
    assert error(lam.get_alias, FunctionName="ver", Name="old")[:2] == ("ResourceNotFoundException", 404)
    assert error(lam.invoke, FunctionName="ver", Qualifier="old")[0] == "ResourceNotFoundException"
    # deleting version 1 (no alias left on it) stops its pinned pool and forgets it
    lam.delete_function(FunctionName="ver", Qualifier="1")
    assert error(lam.invoke, FunctionName="ver", Qualifier="1")[0] == "ResourceNotFoundException"
    assert wait_until(lambda: 1 not in {i["revision"] for i in
                                        server.api.get("/v1/functions/ver/instances").json()["instances"]}, 10)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="ver")["Versions"]] == \
        ["$LATEST", "2", "3"]
    assert ran(lam, "2") == ("two", "2")
    v4 = lam.update_function_code(FunctionName="ver", ZipFile=code("four"), Publish=True)
    assert v4["Version"] == "4"  # numbers are not reused

    lam.delete_function(FunctionName="ver")
    assert server.api.get("/v1/functions/ver/instances").status_code == 404
    assert error(lam.list_versions_by_function, FunctionName="ver")[0] == "ResourceNotFoundException"


def test_weighted_alias_routes_by_weight(srv: dict[str, Server]) -> None:
    lam = client(srv["server"])
    lam.create_function(FunctionName="canary", Runtime="python3.12", Role=ROLE, Publish=True,
                        Handler="lambda_function.lambda_handler", Code={"ZipFile": code("one")})
    lam.update_function_code(FunctionName="canary", ZipFile=code("two"), Publish=True)
    a = lam.create_alias(FunctionName="canary", Name="live", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    assert a["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    n = 200
    seen = [ran(lam, "live", "canary") for _ in range(n)]
    assert all(s in (("one", "1"), ("two", "2")) for s in seen)  # the executed version matches the code
    twos = sum(1 for s in seen if s[1] == "2")
    # Binomial(200, 0.3): mean 60, sd 6.5; 25..95 is more than 5 sd either side (fails ~1 run in 10^6)
    assert 25 <= twos <= 95, twos
    for bad in ({"2": 1.5}, {"$LATEST": 0.5}, {"1": 0.5}, {"2": 0.1, "3": 0.1}):
        assert error(lam.update_alias, FunctionName="canary", Name="live",
                     RoutingConfig={"AdditionalVersionWeights": bad})[0] in \
            ("InvalidParameterValueException", "ResourceNotFoundException")
    assert error(lam.delete_function, FunctionName="canary", Qualifier="2")[0] == "ResourceConflictException"
    lam.update_alias(FunctionName="canary", Name="live", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in lam.get_alias(FunctionName="canary", Name="live")
    assert {ran(lam, "live", "canary") for _ in range(20)} == {("one", "1")}
