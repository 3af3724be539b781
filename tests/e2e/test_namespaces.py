"""Namespaces against a real node: the entity (API, CLI), two namespaces each with a `hello`, `/fn/{ns}/{name}`, and
keys of one namespace that cannot list, read, invoke, write or learn of anything of another on the control API
(each answer the same as for a thing that does not exist)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Server, error_code

HELLO = '''
def handler(event, context):
    return {"who": "%s"}
'''


def _key(server: Server, ns: str, scope: str = "deploy") -> str:
    r = server.api.post("/v1/keys", json={"scope": scope, "namespace": ns})
    assert r.status_code == 201, r.text
    assert r.json()["namespace"] == ns
    return f"{r.json()['access_key_id']}:{r.json()['secret_access_key']}"


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120, headers={"authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def tenants(server: Server) -> dict[str, Any]:
    for ns in ("team-a", "team-b"):
        r = server.api.post("/v1/namespaces", json={"name": ns})
        assert r.status_code == 201, r.text
    a, b = _client(server, _key(server, "team-a")), _client(server, _key(server, "team-b"))
    for c, who in ((a, "a"), (b, "b")):
        r = c.post("/v1/functions", json={"name": "hello", "files": {"handler.py": HELLO % who}})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "hello" and r.json()["namespace"] in ("team-a", "team-b")
    server.deploy("hello", {"handler.py": HELLO % "default"})
    return {"a": a, "b": b}


def test_names_are_validated_with_stable_codes(server: Server) -> None:
    for name in ("Bad", "-x", "a" * 41, "a~b", ""):
        r = server.api.post("/v1/namespaces", json={"name": name})
        assert r.status_code == 400 and error_code(r) == "invalid_namespace", (name, r.text)
    r = server.api.post("/v1/namespaces", json={"name": "default"})
    assert r.status_code == 409 and error_code(r) == "namespace_exists"
    r = server.api.post("/v1/namespaces", json={"name": "q1", "quotas": {"memory_mb": -1}})
    assert r.status_code == 400 and error_code(r) == "invalid_quota"
    r = server.api.post("/v1/namespaces", json={"name": "q1", "quotas": {"cpus": 1}})
    assert r.status_code == 400 and error_code(r) == "invalid_quota"
    r = server.api.get("/v1/functions", params={"namespace": "nosuch"})
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    r = server.api.delete("/v1/namespaces/default")
    assert r.status_code == 400 and error_code(r) == "invalid_namespace"


def test_two_namespaces_each_have_a_hello_and_the_gateway_routes_to_each(server: Server, tenants: Any) -> None:
    assert server.http.post("/fn/hello").json() == {"who": "default"}  # today's route: the default namespace
    assert server.http.post("/fn/team-a/hello").json() == {"who": "a"}
    assert server.http.post("/fn/team-b/hello").json() == {"who": "b"}
    assert server.http.post("/fn/default/hello").json() == {"who": "default"}
    assert server.http.post("/fn/team-a/hello/sub/path?q=1").json() == {"who": "a"}  # a path below it too
    r = server.http.post("/fn/team-c/hello")
    assert r.status_code == 404 and error_code(r) == "function_not_found"
    # each key sees its own hello, by its local name, and nothing of the other namespace
    for c, ns in ((tenants["a"], "team-a"), (tenants["b"], "team-b")):
        fns = c.get("/v1/functions").json()["functions"]
        assert [(f["name"], f["namespace"], f["url"]) for f in fns] == [("hello", ns, f"/fn/{ns}/hello")]
        r = c.post("/v1/functions/hello/invoke", json={})
        assert r.json() == {"who": ns[-1]}, r.text
    names = {f["name"] for f in server.api.get("/v1/functions").json()["functions"]}
    assert "hello" in names and all("~" not in n for n in names)
    a_fns = server.api.get("/v1/functions", params={"namespace": "team-a"}).json()["functions"]
    assert [f["name"] for f in a_fns] == ["hello"]  # an admin key acts in any namespace it names


def test_a_key_of_one_namespace_learns_nothing_of_another(server: Server, tenants: Any) -> None:
    a, b = tenants["a"], tenants["b"]
    server.deploy("only-default", {"handler.py": HELLO % "d"})
    r = b.post("/v1/functions", json={"name": "only-b", "files": {"handler.py": HELLO % "b"}})
    assert r.status_code == 201, r.text
    act_b = server.http.post("/fn/team-b/only-b").headers["x-polyfn-activation-id"]
    # what an absent function gets, a function of another namespace gets
    for path in ("/v1/functions/only-b", "/v1/functions/only-default", "/v1/functions/nosuch"):
        r = a.get(path)
        assert r.status_code == 404 and error_code(r) == "function_not_found", (path, r.text)
        r = a.post(path + "/invoke", json={})
        assert r.status_code == 404 and error_code(r) == "function_not_found", (path, r.text)
        assert "~" not in r.text, r.text  # the name as the caller knows it, not as the node holds it
        r = a.delete(path)
        assert r.status_code == 404 and error_code(r) == "function_not_found", (path, r.text)
        r = a.get(path + "/logs")
        assert r.status_code == 404 and error_code(r) == "function_not_found", (path, r.text)
    for held in ("team-b~only-b", "team-b~hello"):  # the held name is never addressable
        assert error_code(a.get(f"/v1/functions/{held}")) == "function_not_found"
        assert error_code(server.api.get(f"/v1/functions/{held}")) == "function_not_found"
    # asking for the other namespace is answered as for one that does not exist
    for ns in ("team-b", "nosuch"):
        r = a.get("/v1/functions", params={"namespace": ns})
        assert r.status_code == 404 and error_code(r) == "namespace_not_found"
        r = a.get("/v1/functions", headers={"x-polyfn-namespace": ns})
        assert r.status_code == 404 and error_code(r) == "namespace_not_found"
        r = a.get(f"/v1/namespaces/{ns}")
        assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    assert [n["name"] for n in a.get("/v1/namespaces").json()["namespaces"]] == ["team-a"]
    # activations: not listed, not readable, not cancellable; usage: not shown
    r = a.get(f"/v1/activations/{act_b}")
    assert r.status_code == 404 and error_code(r) == "activation_not_found"
    r = a.get(f"/v1/activations/{act_b}-nosuch")
    assert r.status_code == 404 and error_code(r) == "activation_not_found"
    r = a.delete(f"/v1/activations/{act_b}")
    assert r.status_code == 404 and error_code(r) == "activation_not_found"
    assert all(x["namespace"] == "team-a" for x in a.get("/v1/activations").json()["activations"])
    assert act_b in {x["id"] for x in b.get("/v1/activations").json()["activations"]}
    assert a.get("/v1/activations", params={"function": "only-b"}).json()["activations"] == []
    assert {r["function"] for r in a.get("/v1/usage").json()["usage"]} <= {"hello"}
    # a deploy under another namespace's name makes the caller's own function, never touches theirs
    r = a.put("/v1/functions/only-b", json={"files": {"handler.py": HELLO % "a-too"}})
    assert r.status_code == 201, r.text
    assert server.http.post("/fn/team-b/only-b").json() == {"who": "b"}
    assert server.http.post("/fn/team-a/only-b").json() == {"who": "a-too"}
    r = a.post("/v1/functions", json={"name": "team-b~x", "files": {"handler.py": HELLO % "x"}})
    assert r.status_code == 400 and error_code(r) == "invalid_name"
    # every /v1 API is namespaced now (the last ones this session): a namespace's key uses them in its namespace;
    # the admin-only ones stay admin-only
    for path in ("/v1/storage/usage", "/v1/sites", "/v1/workflows", "/v1/dlq", "/v1/queue", "/v1/apps"):
        r = a.get(path)
        assert r.status_code == 200, (path, r.text)
    r = a.post("/v1/namespaces", json={"name": "mine"})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = a.get("/v1/keys")
    assert r.status_code == 403 and error_code(r) == "forbidden"


def _series(text: str) -> set[str]:
    """The `function` label values of a Prometheus text."""
    import re

    return set(re.findall(r'function="([^"]*)"', text))


def test_metrics_and_stats_show_each_namespace_only_its_own(server: Server, tenants: Any) -> None:
    for c in (tenants["a"], tenants["b"]):
        assert c.post("/v1/functions/hello/invoke", json={}).status_code == 200
    assert server.http.post("/fn/hello").status_code == 200
    # a namespace's key: its own series, by local name; nothing of default's or the other namespace's
    for c, other in ((tenants["a"], "team-b"), (tenants["b"], "team-a")):
        r = c.get("/metrics")
        assert r.status_code == 200, r.text
        assert 'polyfn_invocations_total{function="hello",status="success"' in r.text
        assert not any("~" in n for n in _series(r.text)) and other not in r.text
        assert "polyfn_start_time_seconds" in r.text  # the node's unlabelled series stay
        r = c.get("/metrics", params={"namespace": other})  # asking for another: as if it did not exist
        assert r.status_code == 404 and error_code(r) == "namespace_not_found"
        stats = c.get("/v1/stats").json()
        assert "hello" in [f["name"] for f in stats["functions"]] and stats["workflows"] == []
        assert all("~" not in f["name"] for f in stats["functions"])
    # an anonymous scrape (POLYFN_METRICS_PUBLIC, the default) sees the default namespace's series only
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200 and "hello" in _series(r.text)
    assert not any("~" in n for n in _series(r.text)) and "team-" not in r.text
    # a token given is checked
    r = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer nope:nope"})
    assert r.status_code == 401
    # the node admin sees every namespace's series (held names), or one namespace's by local name
    every = _series(server.api.get("/metrics").text)
    assert {"hello", "team-a~hello", "team-b~hello"} <= every
    one = server.api.get("/metrics", params={"namespace": "team-a"})
    assert "hello" in _series(one.text) and not any("~" in n for n in _series(one.text))
    assert "team-b" not in one.text
    names = [f["name"] for f in server.api.get("/v1/stats").json()["functions"]]
    assert "hello" in names and not any("~" in n for n in names)


def test_keys_are_made_in_a_namespace_and_its_admin_is_confined_to_it(server: Server, tenants: Any) -> None:
    r = server.api.post("/v1/keys", json={"scope": "read", "namespace": "nosuch"})
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    a_admin = _client(server, _key(server, "team-a", "admin"))  # the namespace's administrator
    r = a_admin.post("/v1/keys", json={"scope": "read", "namespace": "team-b"})
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    r = a_admin.post("/v1/keys", json={"scope": "read"})
    assert r.status_code == 201 and r.json()["namespace"] == "team-a"
    assert {k["namespace"] for k in a_admin.get("/v1/keys").json()["keys"]} == {"team-a"}
    b_key = server.api.get("/v1/keys", params={"namespace": "team-b"}).json()["keys"][0]["access_key_id"]
    r = a_admin.delete(f"/v1/keys/{b_key}")
    assert r.status_code == 404 and error_code(r) == "key_not_found"
    for path in ("/v1/namespaces", "/v1/namespaces/team-b"):
        assert error_code(a_admin.post(path, json={"name": "x"})) in ("forbidden", "method_not_allowed")
    r = a_admin.delete("/v1/namespaces/team-a")
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert {f["namespace"] for f in a_admin.get("/v1/functions").json()["functions"]} == {"team-a"}
    listed = server.api.get("/v1/keys", params={"namespace": "team-a"}).json()["keys"]
    assert listed and all(k["namespace"] == "team-a" for k in listed)
    assert all(k["namespace"] == "default" for k in server.api.get("/v1/keys").json()["keys"])


def test_the_cli_manages_namespaces_and_acts_in_one(server: Server, tenants: Any, tmp_path: Any) -> None:
    r = server.cli("ns", "create", "cli-ns", "--quota", "functions=3", "--quota", "memory_mb=512", check=True)
    assert "cli-ns created" in r.stdout
    assert "cli-ns" in server.cli("ns", "list", check=True).stdout
    r = server.cli("ns", "create", "Bad")
    assert r.returncode != 0 and "invalid namespace name" in r.stderr
    (tmp_path / "handler.py").write_text(HELLO % "cli")
    server.cli("--namespace", "cli-ns", "deploy", str(tmp_path), "--name", "hello", check=True)
    r = server.cli("invoke", "hello", env={"POLYFN_NAMESPACE": "cli-ns"}, check=True)
    assert '"cli"' in r.stdout
    r = server.cli("ns", "describe", "cli-ns", check=True)
    rows = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.splitlines()[2:] if ln.strip()}
    assert rows["functions"] == ["1", "3"] and rows["memory_mb"][1] == "512", r.stdout
    r = server.cli("--namespace", "nosuch", "list")
    assert r.returncode == 3 and "namespace 'nosuch' does not exist" in r.stderr
    # `keys list` shows each key's namespace
    rows = [ln.split() for ln in server.cli("--namespace", "team-a", "keys", "list", check=True).stdout.splitlines()]
    assert rows[0][:3] == ["access_key_id", "namespace", "scope"], rows[0]
    assert len(rows) > 1 and all(r[1] == "team-a" for r in rows[1:] if r), rows
    rows = [ln.split() for ln in server.cli("keys", "list", check=True).stdout.splitlines()[1:] if ln.strip()]
    assert rows and all(r[1] == "default" for r in rows), rows


# -- the vendor APIs: each cross-namespace attempt with the vendor's real client or wire shape ------------------

def _lambda(server: Server, key: str) -> Any:
    import boto3
    from botocore.config import Config

    key_id, _, secret = key.partition(":")
    return boto3.client("lambda", endpoint_url=server.url, region_name="eu-west-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, read_timeout=60))


def _zip(code: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", code)
    return buf.getvalue()


LAMBDA = "def lambda_handler(event, context):\n    return {'ns': '%s', 'name': context.function_name}\n"


def test_the_lambda_api_works_in_the_keys_namespace_only(server: Server, tenants: Any) -> None:
    import json as _json

    from botocore.exceptions import ClientError

    la = _lambda(server, _key(server, "team-a"))
    lb = _lambda(server, _key(server, "team-b"))
    role = "arn:aws:iam::000000000000:role/x"
    for c, ns in ((la, "a"), (lb, "b")):  # both may have Lambda_Fn
        c.create_function(FunctionName="Lambda_Fn", Runtime="python3.12", Role=role,
                          Handler="lambda_function.lambda_handler", Code={"ZipFile": _zip(LAMBDA % ns)})
    out = _json.loads(la.invoke(FunctionName="Lambda_Fn")["Payload"].read())
    assert out["ns"] == "a" and la.get_function(FunctionName="Lambda_Fn")["Configuration"]["FunctionName"] == "Lambda_Fn"
    assert "~" not in out["name"] and "team-a" not in out["name"], out  # a function knows itself by its local name
    assert _json.loads(lb.invoke(FunctionName="Lambda_Fn")["Payload"].read())["ns"] == "b"
    names_a = {f["FunctionName"] for f in la.list_functions()["Functions"]}
    assert {"hello", "Lambda_Fn"} <= names_a and "only-default" not in names_a
    server.deploy("lambda-only-d", {"handler.py": HELLO % "d"})
    for op, kw in (("get_function", {}), ("invoke", {}), ("delete_function", {}), ("get_function_configuration", {}),
                   ("list_versions_by_function", {}), ("publish_version", {})):
        for name in ("lambda-only-d", "nosuch-fn"):
            with pytest.raises(ClientError) as e:
                getattr(la, op)(FunctionName=name, **kw)
            assert e.value.response["Error"]["Code"] == "ResourceNotFoundException", (op, name)
    with pytest.raises(ClientError) as e:  # an ARN naming another namespace's function is still a's name space
        la.get_function(FunctionName="arn:aws:lambda:eu-west-1:000000000000:function:lambda-only-d")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert server.http.get("/fn/lambda-only-d").status_code == 200  # (it exists: in default)


def test_lambda_arns_carry_the_namespaces_account(server: Server, tenants: Any) -> None:
    """A namespace is an account on AWS: its functions' ARNs carry its account id (the one its state machines'
    ARNs carry; `default` keeps 000000000000) in GetFunction, ListFunctions and Invoke's answers; such an ARN (or
    partial ARN) names the function, and another account's ARN answers exactly as an absent function does."""
    import json as _json

    from botocore.exceptions import ClientError

    from polyfn.tenancy import account_id

    la, admin = _lambda(server, _key(server, "team-a")), _lambda(server, f"polyfn-admin:{server.key}")
    mine, theirs = account_id("team-a"), account_id("team-b")
    assert mine != theirs and "000000000000" not in (mine, theirs)
    la.create_function(FunctionName="Arn_Fn", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                       Handler="lambda_function.lambda_handler", Code={"ZipFile": _zip(LAMBDA % "a")})
    own = f"arn:aws:lambda:eu-west-1:{mine}:function:Arn_Fn"
    assert la.get_function(FunctionName="Arn_Fn")["Configuration"]["FunctionArn"] == own
    assert {f["FunctionArn"].split(":")[4] for f in la.list_functions()["Functions"]} == {mine}
    for name in (own, f"{mine}:function:Arn_Fn", f"{own}:$LATEST"):  # its ARN, partial ARN, qualified ARN
        assert _json.loads(la.invoke(FunctionName=name)["Payload"].read())["ns"] == "a", name
    assert la.get_function_configuration(FunctionName=own)["FunctionName"] == "Arn_Fn"
    with pytest.raises(ClientError) as absent:  # what an absent function answers
        la.get_function(FunctionName="Gone_Fn")
    for c, name in ((la, f"arn:aws:lambda:eu-west-1:{theirs}:function:Lambda_Fn"),  # (team-b has one)
                    (la, f"{theirs}:function:Lambda_Fn"), (la, "arn:aws:lambda:eu-west-1:000000000000:function:hello"),
                    (admin, own)):
        for op in ("get_function", "invoke", "get_function_configuration"):
            with pytest.raises(ClientError) as e:
                getattr(c, op)(FunctionName=name)
            err = e.value.response
            lname = name.rsplit(":", 1)[-1]
            assert err["ResponseMetadata"]["HTTPStatusCode"] == 404 and err["Error"]["Code"] == "ResourceNotFoundException"
            acct = mine if c is la else "000000000000"
            assert err["Error"]["Message"] == absent.value.response["Error"]["Message"].replace(
                f"{mine}:function:Gone_Fn", f"{acct}:function:{lname}"), (op, name, err["Error"])
    # the default namespace keeps 000000000000
    assert admin.get_function(FunctionName="hello")["Configuration"]["FunctionArn"].split(":")[4] == "000000000000"
    assert "000000000000:function:hello" in admin.get_function(
        FunctionName="arn:aws:lambda:eu-west-1:000000000000:function:hello")["Configuration"]["FunctionArn"]


def test_openfaas_namespaces_map_onto_polyfn_ones(server: Server, tenants: Any) -> None:
    key = _key(server, "team-a", "admin")
    key_id, _, secret = key.partition(":")
    faas_a = httpx.Client(base_url=server.url, auth=(key_id, secret), timeout=60)
    faas = httpx.Client(base_url=server.url, auth=("admin", server.key), timeout=60)
    assert faas_a.get("/system/namespaces").json() == ["team-a"]
    assert {"openfaas-fn", "team-a", "team-b"} <= set(faas.get("/system/namespaces").json())
    listed = faas_a.get("/system/functions").json()
    assert listed and {f["namespace"] for f in listed} == {"team-a"} and "hello" in {f["name"] for f in listed}
    listed = faas.get("/system/functions", params={"namespace": "team-b"}).json()
    assert {f["namespace"] for f in listed} == {"team-b"}
    for params in ({"namespace": "team-b"}, {"namespace": "openfaas-fn"}, {"namespace": "nosuch"}):
        assert faas_a.get("/system/functions", params=params).status_code == 404
        assert faas_a.get("/system/function/hello", params=params).status_code == 404
    for name in ("hello.team-b", "only-default", "nosuch"):
        assert faas_a.get(f"/system/function/{name}").status_code == 404
        r = faas_a.request("DELETE", "/system/functions", json={"functionName": name})
        assert r.status_code == 404
    r = faas_a.request("DELETE", "/system/functions", json={"functionName": "hello", "namespace": "team-b"})
    assert r.status_code == 404
    assert faas_a.get("/system/function/hello").json()["namespace"] == "team-a"
    assert faas_a.get("/system/function/hello.team-a").status_code == 200
    assert server.http.post("/function/hello.team-b").json() == {"who": "b"}  # the gateway route, like /fn/ns/name
    assert server.http.post("/function/hello").json() == {"who": "default"}
    # secrets: the key's namespace's (or the one an admin names), by OpenFaaS namespace
    assert faas_a.post("/system/secrets", json={"name": "of-only-a", "value": "x"}).status_code == 201
    assert faas_a.get("/system/secrets").json() == [{"name": "of-only-a", "namespace": "team-a"}]
    assert {"name": "of-only-a", "namespace": "team-a"} in faas.get("/system/secrets",
                                                                      params={"namespace": "team-a"}).json()
    assert "of-only-a" not in {x["name"] for x in faas.get("/system/secrets").json()}
    assert faas_a.get("/system/secrets", params={"namespace": "openfaas-fn"}).status_code == 404
    r = faas.request("DELETE", "/system/secrets", json={"name": "of-only-a"})  # default has none of that name
    assert r.status_code == 404
    r = faas_a.request("DELETE", "/system/secrets", json={"name": "of-only-a"})
    assert r.status_code == 202


def test_openwhisk_namespaces_map_onto_polyfn_ones(server: Server, tenants: Any) -> None:
    key_id, _, secret = _key(server, "team-a").partition(":")
    wa = httpx.Client(base_url=server.url, auth=(key_id, secret), timeout=60)
    assert wa.get("/api/v1/namespaces").json() == ["team-a"]
    code = "def main(args):\n    return {'ns': 'a', 'x': args.get('x')}\n"
    r = wa.put("/api/v1/namespaces/_/actions/ow_act", json={"exec": {"kind": "python:3", "code": code}})
    assert r.status_code == 200 and r.json()["namespace"] == "team-a", r.text
    r = wa.post("/api/v1/namespaces/team-a/actions/ow_act", params={"blocking": "true", "result": "true"},
                json={"x": 1})
    assert r.json() == {"ns": "a", "x": 1}, r.text
    assert "ow_act" in {a["name"] for a in wa.get("/api/v1/namespaces/_/actions").json()}
    wadmin = httpx.Client(base_url=server.url, auth=("polyfn-admin", server.key), timeout=60)
    assert "ow_act" not in {a["name"] for a in wadmin.get("/api/v1/namespaces/_/actions").json()}
    assert "ow_act" in {a["name"] for a in wadmin.get("/api/v1/namespaces/team-a/actions").json()}
    r = wadmin.put("/api/v1/namespaces/_/actions/ow_default", json={"exec": {"kind": "python:3", "code": code}})
    assert r.status_code == 200
    aid = wadmin.post("/api/v1/namespaces/_/actions/ow_default", params={"blocking": "true"},
                      json={}).json()["activationId"]
    for path in ("/api/v1/namespaces/polyfn/actions", "/api/v1/namespaces/team-b/actions",
                 "/api/v1/namespaces/nosuch/actions", "/api/v1/namespaces/_/actions/ow_default",
                 f"/api/v1/namespaces/_/activations/{aid}", f"/api/v1/namespaces/polyfn/activations/{aid}"):
        r = wa.get(path)
        assert r.status_code == 404, (path, r.text)
    r = wa.post("/api/v1/namespaces/_/actions/ow_default", params={"blocking": "true"}, json={})
    assert r.status_code == 404
    assert aid not in {a["activationId"] for a in wa.get("/api/v1/namespaces/_/activations").json()}
    assert wa.get("/api/v1/namespaces/_/packages").json() == []  # (its own: none)


# -- buckets and tables --------------------------------------------------------------------------------------------

def _aws(server: Server, service: str, key: str) -> Any:
    import boto3
    from botocore.config import Config

    key_id, _, secret = key.partition(":")
    endpoint = server.api.get("/v1/storage").json()["endpoint"] if service == "s3" else server.url
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))


def test_buckets_belong_to_the_namespace_of_the_key_that_made_them(server: Server, tenants: Any) -> None:
    from botocore.exceptions import ClientError

    s3a, s3b = _aws(server, "s3", _key(server, "team-a")), _aws(server, "s3", _key(server, "team-b"))
    s3d = _aws(server, "s3", _key(server, "default"))  # a key of the default namespace (not the admin's)
    s3a.create_bucket(Bucket="ns-a-photos")
    s3a.put_object(Bucket="ns-a-photos", Key="k", Body=b"secret of a")
    s3d.create_bucket(Bucket="ns-d-bucket")
    assert s3a.get_object(Bucket="ns-a-photos", Key="k")["Body"].read() == b"secret of a"
    assert "ns-a-photos" in {b["Name"] for b in s3a.list_buckets()["Buckets"]}
    for c in (s3b, s3d):
        assert "ns-a-photos" not in {b["Name"] for b in c.list_buckets()["Buckets"]}
        for call in (lambda c=c: c.get_object(Bucket="ns-a-photos", Key="k"),
                     lambda c=c: c.put_object(Bucket="ns-a-photos", Key="x", Body=b"x"),
                     lambda c=c: c.list_objects_v2(Bucket="ns-a-photos"),
                     lambda c=c: c.delete_object(Bucket="ns-a-photos", Key="k"),
                     lambda c=c: c.get_object(Bucket="ns-nosuch-bucket", Key="k")):
            with pytest.raises(ClientError) as e:
                call()
            assert e.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as e:  # another namespace's default-namespace bucket: the same
        s3a.list_objects_v2(Bucket="ns-d-bucket")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as e:  # bucket names are global, as on S3
        s3b.create_bucket(Bucket="ns-a-photos")
    assert e.value.response["Error"]["Code"] == "BucketAlreadyExists"
    assert s3a.get_object(Bucket="ns-a-photos", Key="k")["Body"].read() == b"secret of a"
    admin = server.api.post("/v1/storage/keys", json={"name": "ns-admin"}).json()
    # the node's admin key sees every namespace's buckets
    s3admin = _aws(server, "s3", f"polyfn-admin:{server.key}")
    assert {"ns-a-photos", "ns-d-bucket"} <= {b["Name"] for b in s3admin.list_buckets()["Buckets"]}
    assert admin  # (a storage key is a key of the default namespace)


def test_tables_are_per_namespace(server: Server, tenants: Any) -> None:
    from botocore.exceptions import ClientError

    da, db = _aws(server, "dynamodb", _key(server, "team-a")), _aws(server, "dynamodb", _key(server, "team-b"))
    schema = {"KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
              "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
              "BillingMode": "PAY_PER_REQUEST"}
    for c, who in ((da, "a"), (db, "b")):  # each may have its own `users`
        c.create_table(TableName="users", **schema)
        c.put_item(TableName="users", Item={"id": {"S": "1"}, "who": {"S": who}})
    assert da.get_item(TableName="users", Key={"id": {"S": "1"}})["Item"]["who"] == {"S": "a"}
    assert db.get_item(TableName="users", Key={"id": {"S": "1"}})["Item"]["who"] == {"S": "b"}
    da.create_table(TableName="only-a", **schema)
    assert "only-a" not in db.list_tables()["TableNames"]
    for call in (lambda: db.describe_table(TableName="only-a"), lambda: db.scan(TableName="only-a"),
                 lambda: db.put_item(TableName="only-a", Item={"id": {"S": "x"}}),
                 lambda: db.describe_table(TableName="nosuch-table")):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    admin = _aws(server, "dynamodb", f"polyfn-admin:{server.key}")
    assert "only-a" not in admin.list_tables()["TableNames"]  # the admin's DynamoDB is the default namespace's


SECRET_FN = '''
import os


def handler(event, context):
    return {"token": os.environ.get("TOKEN")}
'''


def test_secrets_are_per_namespace(server: Server, tenants: Any, tmp_path: Any) -> None:
    a, b = tenants["a"], tenants["b"]
    a_admin = _client(server, _key(server, "team-a", "admin"))
    b_admin = _client(server, _key(server, "team-b", "admin"))
    for c, value in ((a_admin, "a-value"), (b_admin, "b-value"), (server.api, "default-value")):
        r = c.put("/v1/secrets/TOKEN", json={"value": value})
        assert r.status_code == 200 and r.json() == {"name": "TOKEN", "created": True}, r.text
    r = a_admin.put("/v1/secrets/ONLY_A", json={"value": "x"})
    assert r.status_code == 200, r.text
    # each namespace lists its own, by local name; the admin key the default's, or the namespace it names
    assert {x["name"] for x in a_admin.get("/v1/secrets").json()["secrets"]} == {"TOKEN", "ONLY_A"}
    assert {x["name"] for x in b_admin.get("/v1/secrets").json()["secrets"]} == {"TOKEN"}
    default = {x["name"] for x in server.api.get("/v1/secrets").json()["secrets"]}
    assert "TOKEN" in default and "ONLY_A" not in default and not any("~" in n for n in default)
    listed = server.api.get("/v1/secrets", params={"namespace": "team-a"}).json()["secrets"]
    assert {x["name"] for x in listed} == {"TOKEN", "ONLY_A"}
    # another namespace's secret is absent: deleting it answers as for one that never existed
    for c in (b_admin, server.api):
        r = c.delete("/v1/secrets/ONLY_A")
        assert r.status_code == 404 and error_code(r) == "secret_not_found", r.text
    r = b_admin.delete("/v1/secrets/team-a~ONLY_A")
    assert r.status_code == 404 and error_code(r) == "secret_not_found"
    r = b_admin.get("/v1/secrets", params={"namespace": "team-a"})
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    # a function's `secrets:` resolve in its own namespace
    for c in (a, b):
        r = c.put("/v1/functions/sec", json={"files": {"handler.py": SECRET_FN}, "secrets": ["TOKEN:env"]})
        assert r.status_code == 201, r.text
    server.deploy("sec", {"handler.py": SECRET_FN}, secrets=["TOKEN:env"])
    assert server.http.post("/fn/team-a/sec").json() == {"token": "a-value"}
    assert server.http.post("/fn/team-b/sec").json() == {"token": "b-value"}
    assert server.http.post("/fn/sec").json() == {"token": "default-value"}
    # one that only another namespace has is missing, named by its local name
    r = b.put("/v1/functions/sec2", json={"files": {"handler.py": SECRET_FN}, "secrets": ["ONLY_A:env"]})
    assert r.status_code == 201, r.text
    r = server.http.post("/fn/team-b/sec2")
    assert r.status_code >= 500 and "ONLY_A" in r.text and "~" not in r.text, r.text
    # the CLI acts in --namespace
    r = server.cli("--namespace", "team-b", "secret", "set", "cli-b", input="v", check=True)
    assert "created secret cli-b" in r.stdout
    assert "cli-b" in server.cli("--namespace", "team-b", "secret", "list", check=True).stdout
    assert "cli-b" not in server.cli("secret", "list", check=True).stdout
    assert "cli-b" not in server.cli("--namespace", "team-a", "secret", "list", check=True).stdout
