"""`polyfn storage ...` through the real CLI against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from .conftest import REPO, Server
from .storage_helpers import s3_client, storage_info

pytestmark = pytest.mark.timeout(120)


def test_keys_create_json_and_list(server: Server) -> None:
    r = server.cli("storage", "keys", "create", "--name", "ci", "--json", check=True)
    key = json.loads(r.stdout)
    assert set(key) == {"access_key_id", "secret_access_key"}
    s3 = s3_client(server, key)
    s3.create_bucket(Bucket="cli-keys")  # the new key works with boto3
    listed = json.loads(server.cli("storage", "keys", "list", "--json", check=True).stdout)
    assert any(k["access_key_id"] == key["access_key_id"] and k["name"] == "ci" for k in listed)
    assert all("secret_access_key" not in k for k in listed)
    human = server.cli("storage", "keys", "create", check=True).stdout
    assert "AWS_ACCESS_KEY_ID=" in human and f"AWS_ENDPOINT_URL_S3={storage_info(server)['endpoint']}" in human
    server.cli("storage", "keys", "rm", key["access_key_id"], check=True)
    r = server.cli("storage", "keys", "rm", key["access_key_id"])
    assert r.returncode == 3


def test_mb_cp_ls_presign_rm(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"\x01" * (3 * 1024 * 1024))
    server.cli("storage", "mb", "s3://cli-b", check=True)
    server.cli("storage", "cp", str(src), "s3://cli-b/dir/", check=True)
    server.cli("storage", "cp", "s3://cli-b/dir/big.bin", "s3://cli-b/copy.bin", check=True)
    assert "s3://cli-b" in server.cli("storage", "ls", check=True).stdout
    top = server.cli("storage", "ls", "s3://cli-b", check=True).stdout
    assert "PRE" in top and "dir/" in top and "copy.bin" in top
    rec = json.loads(server.cli("storage", "ls", "-r", "--json", "s3://cli-b", check=True).stdout)
    assert sorted(i["key"] for i in rec) == ["copy.bin", "dir/big.bin"]
    url = server.cli("storage", "presign", "s3://cli-b/copy.bin", "--expires", "60", check=True).stdout.strip()
    assert httpx.get(url).content == src.read_bytes()
    put = server.cli("storage", "presign", "--put", "s3://cli-b/from-browser.txt", check=True).stdout.strip()
    assert httpx.put(put, content=b"hi").status_code == 200
    out = tmp_path / "down"
    out.mkdir()
    server.cli("storage", "cp", "s3://cli-b/from-browser.txt", str(out), check=True)
    assert (out / "from-browser.txt").read_bytes() == b"hi"
    r = server.cli("storage", "rm", "s3://cli-b")
    assert r.returncode == 1 and "BucketNotEmpty" in r.stderr and "rm -r" in r.stderr
    r = server.cli("storage", "rm", "s3://cli-b/nope")
    assert r.returncode == 3 and "NoSuchKey" in r.stderr
    server.cli("storage", "rm", "s3://cli-b/copy.bin", check=True)
    server.cli("storage", "rm", "-r", "s3://cli-b", check=True)
    assert "s3://cli-b" not in server.cli("storage", "ls", check=True).stdout
    r = server.cli("storage", "cp", "a", "b")
    assert r.returncode == 2


def test_public_bucket_from_cli(server: Server, tmp_path: Path) -> None:
    server.cli("storage", "mb", "--public", "s3://cli-pub", check=True)
    f = tmp_path / "index.html"
    f.write_text("<h1>hi</h1>")
    server.cli("storage", "cp", str(f), "s3://cli-pub/", check=True)
    r = httpx.get(f"{storage_info(server)['endpoint']}/cli-pub/index.html")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html" and r.text == "<h1>hi</h1>"


def test_cp_to_dash_writes_standard_output(server: Server, tmp_path: Path) -> None:
    """`polyfn storage cp s3://B/K -` prints the object (as `aws s3 cp … -`), never a file named `-`."""
    src = tmp_path / "note.json"
    src.write_text('{"digit": 1}\n')
    server.cli("storage", "mb", "s3://cli-dash", check=True)
    server.cli("storage", "cp", str(src), "s3://cli-dash/", check=True)
    r = server.cli("storage", "cp", "s3://cli-dash/note.json", "-", check=True)
    assert r.stdout == '{"digit": 1}\n' and "standard output" in r.stderr
    assert not (REPO / "-").exists()
