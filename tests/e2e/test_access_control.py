"""Scoped API keys, per-function keys, CORS, rate limits, secrets and TLS, through a real server and CLI."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .. import needs
from .conftest import REPO, Server, error_code, free_port

HELLO = "def handler(event, context):\n    return 'hi'\n"


def create_key(server: Server, *args: str) -> str:
    r = server.cli("keys", "create", "--json", *args, check=True)
    k = json.loads(r.stdout)
    assert k["access_key_id"].startswith("PFAK") and len(k["secret_access_key"]) >= 32
    return f"{k['access_key_id']}:{k['secret_access_key']}"


def as_key(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={"authorization": f"Bearer {token}"})


def test_scopes_are_enforced(server: Server) -> None:
    server.deploy("scoped", {"handler.py": HELLO})
    server.deploy("scoped-other", {"handler.py": HELLO})
    read = as_key(server, create_key(server, "--scope", "read"))
    invoke = as_key(server, create_key(server, "--scope", "invoke", "--function", "scoped"))
    deploy = as_key(server, create_key(server, "--scope", "deploy"))
    assert read.get("/v1/functions").status_code == 200
    r = read.post("/v1/functions/scoped/invoke", json={})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert invoke.post("/v1/functions/scoped/invoke", json={}).json() == "hi"
    assert invoke.post("/v1/functions/scoped-other/invoke", json={}).status_code == 403
    assert invoke.get("/v1/functions").status_code == 403  # bound to one function: no listing of all
    assert invoke.put("/v1/functions/scoped", json={"files": {"handler.py": HELLO}}).status_code == 403
    assert deploy.put("/v1/functions/scoped", json={"files": {"handler.py": HELLO}}).status_code == 200
    assert deploy.get("/v1/keys").status_code == 403  # keys are admin business
    bogus = as_key(server, "PFAKNOPE:not-a-secret")
    assert bogus.get("/v1/functions").status_code == 401


def test_revocation_and_last_used(server: Server) -> None:
    token = create_key(server, "--scope", "read", "--description", "ci")
    client = as_key(server, token)
    assert client.get("/v1/functions").status_code == 200
    key_id = token.split(":")[0]
    listed = {k["access_key_id"]: k for k in json.loads(server.cli("keys", "list", "--json", check=True).stdout)}
    assert listed[key_id]["last_used_at"] is not None and listed[key_id]["scope"] == "read"
    assert "secret_access_key" not in json.dumps(listed) and token.split(":")[1] not in json.dumps(listed)
    assert any(k["scope"] == "admin" and "admin.key" in k["description"] for k in listed.values())
    server.cli("keys", "revoke", key_id, check=True)
    r = client.get("/v1/functions")
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    # The secret alone (no id) also works as a bearer token, for tools that only take one string.
    token2 = create_key(server, "--scope", "read")
    assert as_key(server, token2.split(":")[1]).get("/v1/functions").status_code == 200


def test_function_keys_for_http_trigger(server: Server) -> None:
    server.deploy("locked", {"handler.py": HELLO}, auth="key")
    r = server.http.get("/fn/locked")
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    token = create_key(server, "--scope", "invoke", "--function", "locked")
    assert server.http.get("/fn/locked", headers={"x-functions-key": token}).text == "hi"
    assert server.http.get("/fn/locked", params={"code": token}).text == "hi"
    other = create_key(server, "--scope", "invoke", "--function", "scoped-nope")
    assert server.http.get("/fn/locked", headers={"x-functions-key": other}).status_code == 401
    read = create_key(server, "--scope", "read")
    assert server.http.get("/fn/locked", headers={"x-functions-key": read}).status_code == 401


def test_function_keys_hold_on_every_vendor_ingress(server: Server) -> None:
    """OpenFaaS's /function and /async-function and OpenWhisk's web actions are no way around `auth: key`."""
    server.deploy("locked-faas", {"handler.py": HELLO}, auth="key",
                  annotations={"openwhisk/annotations": '[{"key": "web-export", "value": true}]'})
    for path in ("/function/locked-faas", "/async-function/locked-faas", "/api/v1/web/guest/default/locked-faas.json"):
        r = server.http.post(path, content=b"{}")
        assert r.status_code == 401, (path, r.status_code, r.text)
    token = create_key(server, "--scope", "invoke", "--function", "locked-faas")
    r = server.http.post("/function/locked-faas", content=b"{}", headers={"x-functions-key": token})
    assert r.status_code == 200 and r.text == "hi"
    r = server.http.post("/async-function/locked-faas", params={"code": token}, content=b"{}")
    assert r.status_code == 202


def test_cors_per_function(server: Server) -> None:
    server.deploy("browser", {"handler.py": HELLO},
                  cors={"origins": ["https://app.example.com"], "methods": ["GET", "POST"], "max_age": 60})
    ok = {"origin": "https://app.example.com", "access-control-request-method": "POST",
          "access-control-request-headers": "content-type"}
    r = server.http.options("/fn/browser", headers=ok)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "content-type"
    r = server.http.options("/fn/browser", headers={**ok, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = server.http.get("/fn/browser", headers={"origin": "https://app.example.com"})
    assert r.text == "hi" and r.headers["access-control-allow-origin"] == "https://app.example.com"
    server.deploy("no-cors", {"handler.py": HELLO})
    assert "access-control-allow-origin" not in server.http.get("/fn/no-cors", headers={"origin": "https://app.example.com"}).headers


def test_function_rate_limit(server: Server) -> None:
    server.deploy("limited", {"handler.py": HELLO}, rate_limit=0.2)
    server.deploy("unlimited", {"handler.py": HELLO})
    assert server.http.get("/fn/limited").text == "hi"
    r = server.http.get("/fn/limited")
    assert r.status_code == 429 and error_code(r) == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert server.http.get("/fn/unlimited").text == "hi"  # other functions are not affected


SECRET_FN = '''
import os
def handler(event, context):
    out = {"env": os.environ.get("API_TOKEN")}
    try:
        out["file"] = open("/run/secrets/db-password").read()
    except OSError as e:
        out["file"] = type(e).__name__
    return out
'''


def test_secrets_as_files_and_env_never_shown(server: Server) -> None:
    value = "s3cr3t-" + "x" * 20
    r = server.cli("secret", "set", "db-password", input=value + "\n")
    assert r.returncode == 0, r.stderr
    server.cli("secret", "set", "API_TOKEN", input="tok-123", check=True)
    server.deploy("withsecrets", {"handler.py": SECRET_FN}, secrets=["db-password", "API_TOKEN:env"])
    out = server.http.get("/fn/withsecrets").json()
    assert out["env"] == "tok-123"
    if needs.ROOT and not needs.kernel_lacks("mount"):  # /run/secrets: root and a mount ns (the kernel says)
        assert out["file"] == value, out
    listed = server.cli("secret", "list", "--json", check=True).stdout
    assert "db-password" in listed and value not in listed
    assert value not in server.api.get("/v1/functions/withsecrets").text
    assert value.encode() not in (server.data_dir / "polyfn.db").read_bytes()
    assert value not in server.log.read_text()
    assert (server.data_dir / "node.key").stat().st_mode & 0o777 == 0o600


def test_missing_secret_fails_start_clearly(server: Server) -> None:
    server.deploy("nosecret", {"handler.py": HELLO}, secrets=["never-set"])
    r = server.http.get("/fn/nosecret")
    assert r.status_code == 502 and error_code(r) == "function_init_failed"
    assert "never-set" in r.json()["error"]["message"] and "polyfn secret set" in r.json()["error"]["message"]


@needs.unless(shutil.which("openssl") is not None, "the openssl CLI makes the test certificate")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*_python(), "-m", "polyfn", "serve", "--port", str(port), "--data-dir", str(data),
         "--storage-port", str(free_port()),  # never the shared default 9000: runs share the machine
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True)
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the TLS server did not answer")
                time.sleep(0.1)
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _python() -> list[str]:
    import sys

    return [sys.executable]


def test_cli_deploy_network_none_and_keys_text(server: Server, tmp_path: Path) -> None:
    fn = tmp_path / "isolated"
    fn.mkdir()
    (fn / "handler.py").write_text(HELLO)
    server.cli("deploy", str(fn), "--network", "none", check=True)
    assert server.api.get("/v1/functions/isolated").json()["spec"]["network"] == "none"
    assert server.http.get("/fn/isolated").text == "hi"
    bad = server.cli("deploy", str(fn), "--network", "everything")
    assert bad.returncode != 0 and "network" in (bad.stdout + bad.stderr)
    r = server.cli("keys", "create", "--scope", "read", check=True)
    assert "access_key_id:" in r.stdout and "secret_access_key:" in r.stdout
    assert "not shown again" in r.stderr
    assert "PFAK" in server.cli("keys", "list", check=True).stdout
