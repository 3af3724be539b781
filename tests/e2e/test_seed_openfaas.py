"""The issue's tour, as a user types it: the seed's OpenFaaS reverse sample through the CLI and curl."""

from __future__ import annotations

import json

from .conftest import REPO, Server


def test_openfaas_reverse_tour(server: Server) -> None:
    r = server.cli("deploy", str(REPO / "examples/seed/openfaas-reverse"), "--name", "reverse", check=True)
    assert "reverse" in r.stdout and "openfaas" in r.stdout

    # curl -d 'hello' http://127.0.0.1:8080/fn/reverse  ->  olleh
    resp = server.http.post("/fn/reverse", content=b"hello")
    assert resp.status_code == 200
    assert resp.text == "olleh"

    # polyfn invoke reverse --data '"hello"'  ->  "olleh"
    r = server.cli("invoke", "reverse", "--data", '"hello"', check=True)
    assert r.stdout.strip() == '"olleh"'

    r = server.cli("list", check=True)
    assert "reverse" in r.stdout and "openfaas" in r.stdout

    r = server.cli("describe", "reverse", check=True)
    assert "handler.handle" in r.stdout

    r = server.cli("activations", "reverse", "--json", check=True)
    acts = json.loads(r.stdout)
    acts = acts["activations"] if isinstance(acts, dict) else acts
    assert len(acts) >= 2 and {a["status"] for a in acts} == {"success"}
    assert {a["trigger"] for a in acts} >= {"http", "invoke"}

    r = server.cli("activation", acts[0]["id"], "--json", check=True)
    assert json.loads(r.stdout)["id"] == acts[0]["id"]

    r = server.cli("logs", "reverse", check=True)
    assert r.returncode == 0

    r = server.cli("delete", "reverse", "--yes", check=True)
    assert server.http.post("/fn/reverse", content=b"x").status_code == 404
    r = server.cli("describe", "reverse")
    assert r.returncode != 0


def test_openfaas_unicode_and_empty_body(server: Server) -> None:
    server.cli("deploy", str(REPO / "examples/seed/openfaas-reverse"), "--name", "rev2", check=True)
    assert server.http.post("/fn/rev2", content="你好, 世界".encode()).text == "界世 ,好你"
    r = server.http.post("/fn/rev2", content=b"")
    assert r.status_code == 200 and r.text == ""
