"""The OpenFaaS gateway API with requests shaped as faas-cli sends them (faas-cli itself is not run here)."""

from __future__ import annotations

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
        "annotations": {"topic": "cron-function"}, "limits": {"memory": "64Mi"}, "secrets": [],
        "readOnlyRootFilesystem": True, "namespace": "openfaas-fn"})
    assert r.status_code == 202, r.text
    f = faas.get("/system/function/of-reverse").json()
    assert f["envVars"] == {"MODE": "prod"} and f["limits"]["memory"] == "64Mi"
    assert f["labels"] == {"com.openfaas.scale.max": "4", "team": "x"} and f["annotations"] == {"topic": "cron-function"}
    assert faas.put("/system/functions", json={"service": "of-missing", "image": "x"}).status_code == 404

    r = faas.post("/system/functions", json={"service": "of-reverse-copy", "image": "ghcr.io/me/reverse:0.1",
                                              "envVars": {}})
    assert r.status_code == 202, r.text
    assert faas.post("/function/of-reverse-copy", content=b"xyz").text == "zyx"
    r = faas.post("/system/functions", json={"service": "of-unknown", "image": "docker.io/someone/else:1"})
    assert r.status_code == 400 and "polyfn deploy -f" in r.text
    r = faas.post("/system/functions", json={"service": "of-secret", "image": "ghcr.io/me/reverse:0.1",
                                              "secrets": ["db-password"]})
    assert r.status_code == 400 and "db-password" in r.text

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
