"""The client SDK (clients/js) under Node's test runner against a live node: its unit tests and the ones that
call the node (sign-in, callFunction, storage). Node's test runner does the asserting; this module starts the
node, deploys what the SDK tests call and checks the runner's summary."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import boto3
import pytest

from .conftest import Server, start_server
from .jsclients import ensure_modules

WHOAMI = """
const cloud = require('wx-server-sdk');
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
exports.main = async (event) => {
  if (event.fail) throw new Error('asked to fail');
  const wx = cloud.getWXContext();
  return { openid: wx.OPENID, env: wx.ENV, n: event.n + 1 };
};
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-sdk"))
    s.api.post("/v1/apps", json={"id": "sdk-app", "max_upload": 64 * 1024, "rules": {
        "sdk-posts": {"read": "true", "write": "doc._openid == auth.openid"},
        "sdk-secret": {"read": "false", "write": "false"}}}).raise_for_status()
    for name in ("sdk-notes", "sdk-posts", "sdk-secret"):  # database.test.mjs (sdk-notes: the default rule)
        s.cli("db", "create-collection", name, check=True)
    s.deploy("sdk-whoami", {"index.js": WHOAMI}, flavor="wechat", handler="index.main")
    s.deploy("sdk-members", {"index.js": "exports.main = async () => 'in';"}, flavor="wechat", handler="index.main",
             auth="app")
    yield s
    s.stop()


def post_uploads_supported(node: Server) -> bool:
    """Whether the node's object store takes browser POST uploads (boto3's presigned POST)."""
    import httpx

    key = node.api.post("/v1/keys", json={"scope": "invoke"}).json()
    storage = node.api.get("/healthz").json().get("storage_url") or _storage_url(node)
    s3 = boto3.client("s3", endpoint_url=storage, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
                      aws_secret_access_key=key["secret_access_key"])
    s3.create_bucket(Bucket="probe")
    post = s3.generate_presigned_post("probe", "k")
    r = httpx.post(post["url"], data=post["fields"], files={"file": ("k", b"x")})
    return r.status_code < 300


def _storage_url(node: Server) -> str:
    import json

    return json.loads((node.data_dir / "server.json").read_text())["storage_url"]


@pytest.mark.timeout(600)  # many real clients and processes in one test: slow on a loaded machine
def test_the_sdk_under_nodes_test_runner(node: Server) -> None:
    cwd = ensure_modules()
    env = {**os.environ, "POLYFN_URL": node.url, "POLYFN_APP": "sdk-app",
           "POLYFN_POST_UPLOAD": "1" if post_uploads_supported(node) else "0"}
    r = subprocess.run(["node", "--test", "test/"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    summary = dict(re.findall(r"^# (pass|fail|skipped) (\d+)$", r.stdout, re.M))
    assert r.returncode == 0 and summary.get("fail") == "0", r.stdout[-6000:] + r.stderr[-2000:]
    assert int(summary["pass"]) >= 28 and summary.get("skipped") == "0", r.stdout[-3000:]
