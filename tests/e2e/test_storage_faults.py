"""Object store faults: killed mid-upload, disk full, objects over the limit, a busy or disabled port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from .. import needs
from .conftest import start_server, wait_until
from .storage_helpers import s3_client, storage_info

pytestmark = pytest.mark.timeout(120)


def _code(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def _signed_put_headers(s3: Any, bucket: str, key: str, length: int) -> bytes:
    """The raw request head boto3 would send for a PUT of `length` bytes (signed, UNSIGNED-PAYLOAD)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = f"{s3.meta.endpoint_url}/{bucket}/{key}"
    req = AWSRequest("PUT", url, headers={"content-length": str(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(s3._request_signer._credentials, "s3", "us-east-1").add_auth(req)
    host = s3.meta.endpoint_url.split("//", 1)[1]
    lines = [f"PUT /{bucket}/{key} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_server_killed_mid_upload_leaves_no_partial_object(tmp_path: Path) -> None:
    s = start_server(tmp_path / "data")
    try:
        s3 = s3_client(s)
        s3.create_bucket(Bucket="crash")
        s3.put_object(Bucket="crash", Key="old", Body=b"previous version")
        port = int(storage_info(s)["endpoint"].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # an overwrite of an existing key and a new key, both cut off after 1 of 8 MiB
            sock.sendall(_signed_put_headers(s3, "crash", "old", 8 * 1024 * 1024))
            sock.sendall(b"x" * (1024 * 1024))
            with socket.create_connection(("127.0.0.1", port)) as sock2:
                sock2.sendall(_signed_put_headers(s3, "crash", "new", 8 * 1024 * 1024))
                sock2.sendall(b"y" * (1024 * 1024))
                tmp_dir = s.data_dir / "storage" / "tmp"
                assert wait_until(lambda: sum(f.stat().st_size for f in tmp_dir.iterdir()) >= 2 * 1024 * 1024)
                s.proc.send_signal(signal.SIGKILL)
                s.proc.wait(10)
    finally:
        s.stop(signal.SIGKILL)
    s = start_server(tmp_path / "data")
    try:
        s3 = s3_client(s)
        assert s3.get_object(Bucket="crash", Key="old")["Body"].read() == b"previous version"
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket="crash", Key="new")
        assert _code(e)[0] == 404
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="crash")["Contents"]] == ["old"]
        assert list((s.data_dir / "storage" / "tmp").iterdir()) == []
    finally:
        s.stop()


def test_object_larger_than_the_limit(tmp_path: Path) -> None:
    s = start_server(tmp_path / "data", env={"POLYFN_STORAGE_MAX_OBJECT_SIZE": "1000"})
    try:
        s3 = s3_client(s)
        s3.create_bucket(Bucket="small")
        s3.put_object(Bucket="small", Key="ok", Body=b"x" * 1000)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="small", Key="big", Body=b"x" * 1001)
        assert _code(e) == (400, "EntityTooLarge")
        # no Content-Length (chunked transfer): the limit is enforced while streaming
        url = s3.generate_presigned_url("put_object", Params={"Bucket": "small", "Key": "streamed"})
        r = httpx.put(url, content=iter([b"y" * 600, b"y" * 600]))
        assert r.status_code == 400 and b"<Code>EntityTooLarge</Code>" in r.content
        with pytest.raises(ClientError):
            s3.head_object(Bucket="small", Key="streamed")
        assert list((s.data_dir / "storage" / "tmp").iterdir()) == []
    finally:
        s.stop()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Any:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill the disk needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        needs.missing(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_gives_507_and_no_partial_object(tmp_path: Path, tiny_fs: Path) -> None:
    s = start_server(tmp_path / "data", env={"POLYFN_STORAGE_PATH": str(tiny_fs / "storage")})
    try:
        s3 = s3_client(s)
        s3.create_bucket(Bucket="full")
        s3.put_object(Bucket="full", Key="fits", Body=b"a" * (1024 * 1024))
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="full", Key="too-big", Body=b"b" * (4 * 1024 * 1024))
        assert _code(e) == (507, "InsufficientStorage")
        with pytest.raises(ClientError):
            s3.head_object(Bucket="full", Key="too-big")
        assert list((tiny_fs / "storage" / "tmp").iterdir()) == []
        assert s3.get_object(Bucket="full", Key="fits")["Body"].read() == b"a" * (1024 * 1024)
        s3.put_object(Bucket="full", Key="small-after", Body=b"c" * 1024)  # space was given back
    finally:
        s.stop()


def test_busy_storage_port_does_not_stop_the_node(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        s = start_server(tmp_path / "data", "--storage-port", str(port))
        try:
            info = s.api.get("/v1/storage").json()
            assert info["enabled"] is False and "pass --storage-port" in info["error"]
            assert s.http.get("/healthz").status_code == 200
        finally:
            s.stop()


def test_storage_port_zero_disables_the_store(tmp_path: Path) -> None:
    s = start_server(tmp_path / "data", "--storage-port", "0")
    try:
        info = s.api.get("/v1/storage").json()
        assert info["enabled"] is False and info["endpoint"] == ""
        r = s.cli("storage", "ls")
        assert r.returncode != 0 and "--storage-port" in r.stderr
    finally:
        s.stop()

