"""The OpenFaaS gateway API with requests shaped as faas-cli sends them (faas-cli itself is not run here)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import wait_until

HANDLE = 'def handle(req):\n    """handle a request to the function"""\n    return req[::-1]\n'


@pytest.fixture(scope="module")
def faas(server: Any, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    d = tmp_path_factory.mktemp("stack")
    (d / "reverse").mkdir()
    (d / "reverse" / "handler.py").write_text(HANDLE)
    (d / "stack.yml").write_text("version: 1.0\nprovider: {name: openfaas, gateway: http://127.0.0.1:8080}\n"
                                 "functions:\n  of-reverse:\n    lang: python3\n    handler: ./reverse\n"
                                 "    image: ghcr.io/me/reverse:0.1\n")
    r = server.cli("deploy", "-f", str(d / "stack.yml"))
    assert r.returncode == 0, r.stderr
    return httpx.Client(base_url=server.url, auth=("admin", server.key), timeout=60)


def test_auth_is_basic_admin_key(server: Any, faas: httpx.Client) -> None:
    assert server.http.get("/system/functions").status_code == 401
    assert server.http.get("/system/functions", auth=("admin", "wrong")).status_code == 401
    r = server.http.get("/system/functions", auth=("admin", "wrong"))
    assert r.headers["www-authenticate"].startswith("Basic")
    assert faas.get("/system/functions").status_code == 200


def test_list_status_invoke_info(faas: httpx.Client) -> None:
    fns = {f["name"]: f for f in faas.get("/system/functions").json()}
    f = fns["of-reverse"]
    assert f["image"] == "ghcr.io/me/reverse:0.1" and f["namespace"] == "openfaas-fn"
    assert {"replicas", "availableReplicas", "invocationCount", "createdAt", "envVars", "labels"} <= set(f)
    assert faas.post("/function/of-reverse", content=b"hello").text == "olleh"
    assert faas.post("/function/of-reverse.openfaas-fn", content=b"abc").text == "cba"
    assert faas.get("/system/function/of-reverse").json()["name"] == "of-reverse"
    assert faas.get("/system/function/nope").status_code == 404
    info = faas.get("/system/info").json()
    assert info["provider"]["provider"] == "polyfn" and info["version"]["release"]
    assert faas.get("/system/namespaces").json() == ["openfaas-fn"]


def test_update_deploy_from_known_image_scale_delete(faas: httpx.Client) -> None:
    # faas-cli deploy: PUT first (update), POST when the function does not exist yet.
    r = faas.put("/system/functions", json={
        "service": "of-reverse", "image": "ghcr.io/me/reverse:0.1", "envProcess": "python3 index.py",
        "envVars": {"MODE": "prod"}, "labels": {"com.openfaas.scale.max": "4", "team": "x"},
        "annotations": {"topic": "cron-function", "schedule": "0 0 1 1 *"}, "limits": {"memory": "64Mi"},
        "secrets": [], "readOnlyRootFilesystem": True, "namespace": "openfaas-fn"})
    assert r.status_code == 202, r.text
    f = faas.get("/system/function/of-reverse").json()
    assert f["envVars"] == {"MODE": "prod"} and f["limits"]["memory"] == "64Mi"
    assert f["labels"] == {"com.openfaas.scale.max": "4", "team": "x"}
    assert f["annotations"] == {"topic": "cron-function", "schedule": "0 0 1 1 *"}
    assert faas.put("/system/functions", json={"service": "of-missing", "image": "x"}).status_code == 404

    r = faas.post("/system/functions", json={"service": "of-reverse-copy", "image": "ghcr.io/me/reverse:0.1",
                                              "envVars": {}})
    assert r.status_code == 202, r.text
    assert faas.post("/function/of-reverse-copy", content=b"xyz").text == "zyx"
    r = faas.post("/system/functions", json={"service": "of-unknown", "image": "docker.io/someone/else:1"})
    assert r.status_code == 400 and "polyfn deploy -f" in r.text
    r = faas.post("/system/functions", json={"service": "of-secret", "image": "ghcr.io/me/reverse:0.1",
                                              "secrets": ["db-password"]})
    assert r.status_code == 400 and "db-password" in r.text and "faas-cli secret create" in r.text

    r = faas.post("/system/scale-function/of-reverse-copy", json={"serviceName": "of-reverse-copy", "replicas": 1})
    assert r.status_code == 202
    assert wait_until(lambda: faas.get("/system/function/of-reverse-copy").json()["availableReplicas"] >= 1, 20)
    assert faas.get("/system/function/of-reverse-copy").json()["replicas"] >= 1

    r = faas.request("DELETE", "/system/functions", json={"functionName": "of-reverse-copy"})
    assert r.status_code == 202
    assert faas.get("/system/function/of-reverse-copy").status_code == 404
    assert faas.request("DELETE", "/system/functions", json={"functionName": "of-reverse-copy"}).status_code == 404


def test_async_function_with_callback(faas: httpx.Client) -> None:
    got: dict[str, Any] = {}
    done = threading.Event()

    class Callback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got["body"] = self.rfile.read(int(self.headers["content-length"]))
            got["headers"] = dict(self.headers)
            self.send_response(200)
            self.end_headers()
            done.set()

        def log_message(self, *args: Any) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = faas.post("/async-function/of-reverse", content=b"async",
                      headers={"X-Callback-Url": f"http://127.0.0.1:{srv.server_port}/cb"})
        assert r.status_code == 202 and r.headers["x-call-id"]
        assert done.wait(20)
        assert got["body"] == b"cnysa"
        hdrs = {k.lower(): v for k, v in got["headers"].items()}
        assert hdrs["x-call-id"] == r.headers["x-call-id"] and hdrs["x-function-status"] == "200"
        assert hdrs["x-function-name"] == "of-reverse"
    finally:
        srv.shutdown()
    assert faas.post("/async-function/nope").status_code == 404


def test_logs(server: Any, faas: httpx.Client, tmp_path: Path) -> None:
    server.deploy("of-printer", {"handler.py": "def handle(req):\n    print('printed', req)\n    return 'ok'\n"},
                  flavor="openfaas")
    assert faas.post("/function/of-printer", content=b"one").text == "ok"
    r = faas.get("/system/logs", params={"name": "of-printer", "tail": 10, "follow": "false"})
    assert r.status_code == 200
    entries = [json.loads(line) for line in r.text.splitlines()]
    assert any(e["text"] == "printed one" and e["name"] == "of-printer" for e in entries)
    assert {"name", "namespace", "instance", "timestamp", "text"} <= set(entries[0])


def test_a_function_deleted_through_the_openfaas_api_takes_its_triggers(server: Any, faas: httpx.Client) -> None:
    """Every API's delete is the same delete: the vendor APIs once left a deleted function's triggers
    running (only `DELETE /v1/functions/{name}` removed them)."""
    server.deploy("of-ticking", {"handler.py": HANDLE}, flavor="openfaas")
    r = server.api.post("/v1/functions/of-ticking/triggers",
                        json={"kind": "cron", "config": {"schedule": "0 0 1 1 *"}, "id": "of-ticking-yearly"})
    assert r.status_code == 201, r.text
    assert faas.request("DELETE", "/system/functions", json={"functionName": "of-ticking"}).status_code == 202
    assert server.api.get("/v1/triggers/of-ticking-yearly").status_code == 404
    assert all(t["function"] != "of-ticking" for t in server.api.get("/v1/triggers").json()["triggers"])


SECRET_READER = "def handle(req):\n    return open('/run/secrets/api-token').read()\n"


def test_secrets_are_polyfn_secrets(server: Any, faas: httpx.Client) -> None:
    # faas-cli secret create/list/update/remove
    assert faas.post("/system/secrets", json={"name": "api-token", "value": "s3cr3t"}).status_code == 201
    r = faas.post("/system/secrets", json={"name": "api-token", "value": "again"})
    assert r.status_code == 409 and "faas-cli secret update" in r.text
    assert {"name": "api-token", "namespace": "openfaas-fn"} in faas.get("/system/secrets").json()
    assert "api-token" in [x["name"] for x in server.api.get("/v1/secrets").json()["secrets"]]
    assert faas.put("/system/secrets", json={"name": "nope", "value": "x"}).status_code == 404
    server.deploy("of-secret-reader", {"handler.py": SECRET_READER}, flavor="openfaas",
                  annotations={"openfaas/image": "ghcr.io/me/secret-reader:1"})
    r = faas.put("/system/functions", json={"service": "of-secret-reader", "image": "ghcr.io/me/secret-reader:1",
                                            "secrets": ["api-token"]})
    assert r.status_code == 202, r.text
    assert faas.get("/system/function/of-secret-reader").json()["secrets"] == ["api-token"]
    assert faas.post("/function/of-secret-reader", content=b"").text == "s3cr3t"
    raw = base64.b64encode(b"rotated").decode()  # what faas-cli sends for a value read from a file: rawValue
    assert faas.put("/system/secrets", json={"name": "api-token", "rawValue": raw}).status_code == 202
    # as on OpenFaaS, instances already running keep the value they started with; a redeploy reads the new one
    assert faas.put("/system/functions", json={"service": "of-secret-reader", "image": "ghcr.io/me/secret-reader:1",
                                               "secrets": ["api-token"], "envVars": {"V": "2"}}).status_code == 202
    assert faas.post("/function/of-secret-reader", content=b"").text == "rotated"
    assert faas.request("DELETE", "/system/secrets", json={"name": "api-token"}).status_code == 202
    assert faas.request("DELETE", "/system/secrets", json={"name": "api-token"}).status_code == 404
    assert "api-token" not in [x["name"] for x in faas.get("/system/secrets").json()]


def test_login_with_a_key_of_too_small_a_scope_says_so(server: Any) -> None:
    key = server.api.post("/v1/keys", json={"scope": "invoke"}).json()
    r = server.http.get("/system/functions", auth=("admin", key["secret_access_key"]))
    assert r.status_code == 403 and "scope 'invoke'" in r.text and "--scope admin" in r.text


def test_redeploy_applies_the_definition_as_given(server: Any, faas: httpx.Client) -> None:
    server.deploy("of-redeploy", {"handler.py": HANDLE}, flavor="openfaas",
                  annotations={"openfaas/image": "ghcr.io/me/redeploy:1"})
    full = {"service": "of-redeploy", "image": "ghcr.io/me/redeploy:1",
            "labels": {"com.openfaas.scale.min": "1", "team": "a"},
            "annotations": {"topic": "cron-function", "schedule": "*/5 * * * *"},
            "limits": {"memory": "128M"}, "requests": {"memory": "64M", "cpu": "50m"},
            "constraints": ["node.platform.os == linux"], "readOnlyRootFilesystem": False}
    assert faas.put("/system/functions", json=full).status_code == 202
    info = server.api.get("/v1/functions/of-redeploy").json()
    assert info["spec"]["min_instances"] == 1
    cron = [t for t in server.api.get("/v1/functions/of-redeploy/triggers").json()["triggers"] if t["kind"] == "cron"]
    assert [t["config"]["schedule"] for t in cron] == ["*/5 * * * *"]
    # what `faas-cli diff` compares comes back as given: no drift
    f = faas.get("/system/function/of-redeploy").json()
    assert f["limits"] == {"memory": "128M"} and f["requests"] == {"memory": "64M", "cpu": "50m"}
    assert f["constraints"] == ["node.platform.os == linux"] and f["readOnlyRootFilesystem"] is False
    assert f["labels"] == full["labels"] and f["annotations"] == full["annotations"] and f["secrets"] == []

    assert faas.put("/system/functions", json={"service": "of-redeploy", "image": "ghcr.io/me/redeploy:1"}).status_code == 202
    info = server.api.get("/v1/functions/of-redeploy").json()
    assert info["spec"]["min_instances"] == 0 and info["spec"]["max_instances"] == 10  # the defaults again
    assert not server.api.get("/v1/functions/of-redeploy/triggers").json()["triggers"]
    f = faas.get("/system/function/of-redeploy").json()
    assert f["labels"] == {} and f["annotations"] == {} and "requests" not in f and f["constraints"] == []


def test_scaled_to_zero_is_ready(server: Any, faas: httpx.Client) -> None:
    server.deploy("of-idle", {"handler.py": HANDLE}, flavor="openfaas")
    f = faas.get("/system/function/of-idle").json()
    assert f["availableReplicas"] == 1 and f["replicas"] == 1  # `faas-cli describe`: Status Ready


def test_deploy_after_remove_recreates_from_the_kept_code(server: Any, faas: httpx.Client) -> None:
    server.deploy("of-solo", {"handler.py": HANDLE}, flavor="openfaas", annotations={"openfaas/image": "ghcr.io/me/solo:1"})
    assert faas.request("DELETE", "/system/functions", json={"functionName": "of-solo"}).status_code == 202
    assert faas.get("/system/function/of-solo").status_code == 404
    r = faas.post("/system/functions", json={"service": "of-solo", "image": "ghcr.io/me/solo:1", "envVars": {}})
    assert r.status_code == 202, r.text
    assert faas.post("/function/of-solo", content=b"back").text == "kcab"


def test_stack_redeploy_without_the_cron_annotation_removes_its_trigger(server: Any, tmp_path: Path) -> None:
    (tmp_path / "tick").mkdir()
    (tmp_path / "tick" / "handler.py").write_text(HANDLE)
    head = ("version: 1.0\nprovider: {name: openfaas, gateway: http://127.0.0.1:8080}\n"
            "functions:\n  of-tick:\n    lang: python3\n    handler: ./tick\n    image: ghcr.io/me/tick:1\n")
    (tmp_path / "stack.yml").write_text(head + "    annotations: {topic: cron-function, schedule: '0 0 1 1 *'}\n")
    server.cli("deploy", "-f", str(tmp_path / "stack.yml"), check=True)

    def kinds() -> list[str]:
        return sorted(t["kind"] for t in server.api.get("/v1/functions/of-tick/triggers").json()["triggers"])

    assert kinds() == ["cron"]
    mine = server.api.post("/v1/functions/of-tick/triggers", json={"kind": "cron", "config": {"schedule": "0 0 2 1 *"}})
    assert mine.status_code == 201, mine.text  # made by hand: a redeploy of the file leaves it
    (tmp_path / "stack.yml").write_text(head)
    r = server.cli("deploy", "-f", str(tmp_path / "stack.yml"), check=True)
    assert "no longer declares it" in r.stdout
    assert [t["id"] for t in server.api.get("/v1/functions/of-tick/triggers").json()["triggers"]] == [mine.json()["id"]]
