"""Log shipping with a key that can do nothing else (issue #18, item 8): `polyfn keys create --scope ingest`,
`polyfn logs push STREAM [FILE]`."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Server, wait_until
from .storage_helpers import s3_client

RECORDER = '''import json, base64, gzip

def handler(event, context):
    lines = [l["message"] for l in event["data"]["lines"]]
    print("GOT " + json.dumps(lines))
    return len(lines)
'''


def test_an_ingest_key_pushes_lines_and_nothing_else(server: Server, tmp_path: Path) -> None:
    server.deploy("lp-rec", {"handler.py": RECORDER})
    server.cli("trigger", "add", "lp-rec", "log", "lp-events", check=True)
    made = json.loads(server.cli("keys", "create", "--scope", "ingest", "--json", check=True).stdout)
    key = f"{made['access_key_id']}:{made['secret_access_key']}"
    shipper = {"POLYFN_API_KEY": key, "POLYFN_URL": server.url}
    lines = tmp_path / "app.log"
    lines.write_text("first line\nsecond line\n")
    r = server.cli("logs", "push", "lp-events", str(lines), env=shipper)
    assert r.returncode == 0 and "pushed 2 line(s) to lp-events (1 subscribing trigger(s))" in r.stderr, r.stderr
    r = server.cli("logs", "push", "lp-events", env=shipper, input="third line\n")
    assert r.returncode == 0 and "pushed 1 line(s)" in r.stderr, r.stderr

    def got() -> list[str]:
        out = server.cli("logs", "lp-rec", check=True).stdout
        return [x for line in out.splitlines() if "GOT " in line for x in json.loads(line.split("GOT ", 1)[1])]

    assert wait_until(lambda: sorted(got()) == ["first line", "second line", "third line"], timeout=60), got()
    # the key can do nothing else: read, invoke, deploy, storage, tables
    bearer = {"authorization": f"Bearer {key}"}
    for method, path in (("GET", "/v1/functions"), ("GET", "/v1/functions/lp-rec/logs"),
                         ("POST", "/v1/functions/lp-rec/invoke"), ("GET", "/v1/activations"),
                         ("DELETE", "/v1/functions/lp-rec"), ("POST", "/v1/keys")):
        resp = server.http.request(method, path, headers=bearer, json={})
        assert resp.status_code == 403, (method, path, resp.status_code, resp.text)
    assert server.cli("list", env=shipper).returncode != 0
    import botocore.exceptions
    import pytest

    s3 = s3_client(server, {"access_key_id": made["access_key_id"], "secret_access_key": made["secret_access_key"]})
    with pytest.raises(botocore.exceptions.ClientError):
        s3.list_buckets()
    # an invoke key cannot ship logs (it never could); the admin key can
    inv = json.loads(server.cli("keys", "create", "--scope", "invoke", "--json", check=True).stdout)
    resp = server.http.post("/v1/logs/lp-events", json=["x"],
                            headers={"authorization": f"Bearer {inv['access_key_id']}:{inv['secret_access_key']}"})
    assert resp.status_code == 403
    assert server.api.post("/v1/logs/lp-events", json=["y"]).status_code == 202
