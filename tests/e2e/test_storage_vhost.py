"""Virtual-host style addressing (`http://BUCKET.localhost:PORT/KEY`) against a real server: boto3 with
`addressing_style: virtual`, raw requests signed with botocore's own SigV4 signer, and presigned URLs.

`*.localhost` names are loopback by RFC 6761 (systemd-resolved, browsers and curl resolve them so), but this
machine's glibc resolver only knows `localhost` from /etc/hosts. The boto3 test therefore resolves
`*.localhost` to 127.0.0.1 inside the test process (`socket.getaddrinfo`, the one function urllib3 and httpx
call); everything else — boto3, its signing, the HTTP exchange and the server — is real. The raw-request
test needs no name resolution at all: it connects to 127.0.0.1 and sends the `Host` header.
"""

from __future__ import annotations

import socket
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from .conftest import Server
from .storage_helpers import new_key, storage_info

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def localhost_names(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.fixture(scope="module")
def key(server: Server) -> dict[str, str]:
    return new_key(server, "vhost")


def _port(server: Server) -> int:
    return int(storage_info(server)["endpoint"].rsplit(":", 1)[1])


def _client(server: Server, key: dict[str, str], style: str, **extra: Any) -> Any:
    return boto3.client("s3", endpoint_url=f"http://localhost:{_port(server)}", region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
                        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1}, **extra))


def test_boto3_virtual_addressing(server: Server, key: dict[str, str], localhost_names: None) -> None:
    s3 = _client(server, key, "virtual")
    seen: list[str] = []
    s3.meta.events.register("before-send.s3", lambda request, **_: seen.append(request.url))
    s3.create_bucket(Bucket="vh-photos")
    s3.put_object(Bucket="vh-photos", Key="a/b c.txt", Body=b"hello", ContentType="text/plain",
                  Metadata={"who": "vhost"})
    s3.put_object(Bucket="vh-photos", Key="a/d.txt", Body=b"x" * 10)
    assert seen[0].startswith(f"http://vh-photos.localhost:{_port(server)}/")  # really virtual-host style
    got = s3.get_object(Bucket="vh-photos", Key="a/b c.txt")
    assert got["Body"].read() == b"hello" and got["Metadata"] == {"who": "vhost"}
    assert s3.get_object(Bucket="vh-photos", Key="a/d.txt", Range="bytes=2-4")["Body"].read() == b"xxx"
    listing = s3.list_objects_v2(Bucket="vh-photos", Prefix="a/", MaxKeys=1)
    assert [o["Key"] for o in listing["Contents"]] == ["a/b c.txt"] and listing["IsTruncated"]
    rest = s3.list_objects_v2(Bucket="vh-photos", Prefix="a/", ContinuationToken=listing["NextContinuationToken"])
    assert [o["Key"] for o in rest["Contents"]] == ["a/d.txt"]
    assert s3.head_bucket(Bucket="vh-photos")["ResponseMetadata"]["HTTPStatusCode"] == 200
    # the same objects through path style
    path = _client(server, key, "path")
    assert path.get_object(Bucket="vh-photos", Key="a/b c.txt")["Body"].read() == b"hello"
    # presigned URLs, V4 and V2 (V2 signs /bucket/key whatever the addressing style)
    for version in ("s3v4", "s3"):
        signer = _client(server, key, "virtual", signature_version=version)
        url = signer.generate_presigned_url("get_object", Params={"Bucket": "vh-photos", "Key": "a/b c.txt"})
        assert url.startswith("http://vh-photos.localhost:")
        r = httpx.get(url)
        assert (r.status_code, r.content) == (200, b"hello"), (version, r.text)
        assert httpx.get(url.replace("vh-photos.localhost", "other.localhost")).status_code in (403, 404)
    s3.delete_object(Bucket="vh-photos", Key="a/b c.txt")
    s3.delete_objects(Bucket="vh-photos", Delete={"Objects": [{"Key": "a/d.txt"}]})
    s3.delete_bucket(Bucket="vh-photos")
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="vh-photos")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def _signed(method: str, url: str, key: dict[str, str], body: bytes = b"") -> AWSRequest:
    req = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(key["access_key_id"], key["secret_access_key"]), "s3", "us-east-1").add_auth(req)
    return req


def test_raw_requests_with_host_header(server: Server, key: dict[str, str]) -> None:
    """No name resolution involved: connect to 127.0.0.1, name the bucket in `Host`, sign with botocore."""
    port = _port(server)
    base = f"http://127.0.0.1:{port}"

    def send(method: str, host: str, path: str, body: bytes = b"", sign_host: str | None = None) -> httpx.Response:
        req = _signed(method, f"http://{sign_host or host}:{port}{path}", key, body)
        headers = dict(req.headers.items())
        headers["host"] = f"{host}:{port}"
        return httpx.request(method, base + path, headers=headers, content=body)

    assert send("PUT", "vh-raw.localhost", "/").status_code == 200
    r = send("PUT", "vh-raw.localhost", "/dir/file.bin", b"\x00\x01payload")
    assert r.status_code == 200, r.text
    r = send("GET", "vh-raw.localhost", "/dir/file.bin")
    assert (r.status_code, r.content) == (200, b"\x00\x01payload")
    r = send("GET", "vh-raw.localhost", "/?list-type=2&prefix=dir%2F")
    assert r.status_code == 200 and "<Key>dir/file.bin</Key>" in r.text and "<Name>vh-raw</Name>" in r.text
    r = send("GET", "localhost", "/vh-raw/dir/file.bin")  # path style, same object
    assert r.content == b"\x00\x01payload"
    # a signature made for another bucket's host does not match this one
    r = send("GET", "vh-raw.localhost", "/dir/file.bin", sign_host="vh-other.localhost")
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text
    # a host under no configured storage domain is path style: "/dir/file.bin" is bucket "dir"
    r = send("GET", "vh-raw.example.org", "/dir/file.bin")
    assert r.status_code == 404 and "NoSuchBucket" in r.text
    assert send("DELETE", "vh-raw.localhost", "/dir/file.bin").status_code == 204
    assert send("DELETE", "vh-raw.localhost", "/").status_code == 204
