"""The `s3` backend: polyfn in front of a real S3-compatible server (moto's server mode, started here)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from .. import needs
from .conftest import Server, moto_server, start_server, wait_until
from .storage_helpers import s3_client, storage_info

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    needs.module("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(scope="module")
def proxied(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn"), env={
        "POLYFN_STORAGE_BACKEND": "s3", "POLYFN_STORAGE_UPSTREAM_URL": upstream,
        "POLYFN_STORAGE_UPSTREAM_ACCESS_KEY_ID": "testing", "POLYFN_STORAGE_UPSTREAM_SECRET_ACCESS_KEY": "testing"})
    yield s
    s.stop()


def direct(upstream: str) -> Any:
    return boto3.client("s3", endpoint_url=upstream, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


def test_operations_reach_the_upstream(proxied: Server, upstream: str) -> None:
    s3 = s3_client(proxied)
    s3.create_bucket(Bucket="up-one")
    s3.put_object(Bucket="up-one", Key="a/b.txt", Body=b"through polyfn", ContentType="text/plain",
                  Metadata={"k": "v"})
    got = s3.get_object(Bucket="up-one", Key="a/b.txt")
    assert got["Body"].read() == b"through polyfn" and got["Metadata"] == {"k": "v"}
    # it really is in the upstream
    assert direct(upstream).get_object(Bucket="up-one", Key="a/b.txt")["Body"].read() == b"through polyfn"
    assert s3.get_object(Bucket="up-one", Key="a/b.txt", Range="bytes=0-6")["Body"].read() == b"through"
    s3.copy_object(Bucket="up-one", Key="copy", CopySource="up-one/a/b.txt")
    r = s3.list_objects_v2(Bucket="up-one", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["copy"] and r["CommonPrefixes"] == [{"Prefix": "a/"}]
    data = os.urandom(11 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(data), "up-one", "big")  # multipart through the proxy
    assert s3.get_object(Bucket="up-one", Key="big")["Body"].read() == data
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "up-one", "Key": "copy"})
    assert httpx.get(url).content == b"through polyfn"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="up-one", Key="missing")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    s3.delete_object(Bucket="up-one", Key="copy")
    with pytest.raises(ClientError):
        direct(upstream).head_object(Bucket="up-one", Key="copy")


def test_polyfn_keys_are_checked_before_forwarding(proxied: Server) -> None:
    endpoint = storage_info(proxied)["endpoint"]
    s3 = s3_client(proxied)
    s3.create_bucket(Bucket="up-auth")
    s3.put_object(Bucket="up-auth", Key="k", Body=b"x")
    assert httpx.get(f"{endpoint}/up-auth/k").status_code == 403
    bad = s3_client(proxied, {"access_key_id": "testing", "secret_access_key": "testing"})  # upstream's, not ours
    with pytest.raises(ClientError) as e:
        bad.get_object(Bucket="up-auth", Key="k")
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    s3.create_bucket(Bucket="up-public", ACL="public-read")
    s3.put_object(Bucket="up-public", Key="k", Body=b"open")
    assert httpx.get(f"{endpoint}/up-public/k").content == b"open"


def test_upstream_changes_trigger_functions(proxied: Server, tmp_path: Path) -> None:
    s3 = s3_client(proxied)
    s3.create_bucket(Bucket="up-events")
    s3.create_bucket(Bucket="up-log")
    code = '''
import json, boto3
s3 = boto3.client("s3")
def handler(event, context):
    s3.put_object(Bucket="up-log", Key=event["type"].rsplit(".", 1)[-1] + "/" + event["data"]["key"],
                  Body=json.dumps(event["data"]).encode())
'''
    proxied.deploy("up-recorder", {"main.py": code}, handler="main.handler", flavor="native")
    r = proxied.api.post("/v1/storage/triggers", json={"function": "up-recorder", "bucket": "up-events",
                                                       "events": "created,deleted"})
    assert r.status_code == 201
    s3.put_object(Bucket="up-events", Key="one", Body=b"12345")
    s3.upload_fileobj(io.BytesIO(os.urandom(6 * 1024 * 1024)), "up-events", "multi",
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * 1024 * 1024))
    s3.delete_object(Bucket="up-events", Key="one")
    s3.put_object(Bucket="up-events", Key="two", Body=b"2")
    s3.delete_objects(Bucket="up-events", Delete={"Objects": [{"Key": "two"}]})

    def logged() -> set[str]:
        return {o["Key"] for o in s3.list_objects_v2(Bucket="up-log").get("Contents", [])}

    assert wait_until(lambda: logged() == {"created/one", "created/multi", "deleted/one", "created/two",
                                           "deleted/two"}, timeout=30), logged()
    import json

    data = json.loads(s3.get_object(Bucket="up-log", Key="created/one")["Body"].read())
    assert data["size"] == 5 and data["etag"] == "827ccb0eea8a706c4c34a16891f84e7b"
    multi = json.loads(s3.get_object(Bucket="up-log", Key="created/multi")["Body"].read())
    assert multi["size"] == 6 * 1024 * 1024 and multi["etag"].endswith("-1")  # one 8 MiB-chunk part
