"""A small S3 client for polyfn's object store (used by `polyfn storage ...`), signing with SigV4.

It speaks plain S3 over httpx, so it also works against any S3 endpoint; boto3 remains the client of
choice inside functions. `from_server(client)` reads the endpoint and the node's key from `GET /v1/storage`.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import httpx

from polyfn.sdk.client import ApiError, Client, PolyfnError, ServerUnreachable
from polyfn.storage import sigv4

CHUNK = 256 * 1024


class StorageError(ApiError):
    """An S3 error answer: `code` is S3's (NoSuchKey, AccessDenied …)."""


def _strip(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key); key may be empty."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return bucket, key


class StorageClient:
    def __init__(self, endpoint: str, access_key_id: str, secret_access_key: str, region: str = "us-east-1",
                 timeout: float = 60.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key_id = access_key_id
        self.secret = secret_access_key
        self.region = region
        self.host = urlsplit(self.endpoint).netloc
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, read=None))

    @classmethod
    def from_server(cls, client: Client) -> StorageClient:
        info = client._json("GET", "/v1/storage")
        if not info.get("endpoint"):
            raise PolyfnError(f"the server's object store is not serving: {info.get('error') or 'disabled'}; "
                              "start it with `polyfn serve --storage-port PORT`")
        c = info.get("credentials")
        if not c:
            raise PolyfnError("this API key cannot sign S3 requests (a key made before polyfn kept secrets "
                              "encrypted): create a new one with `polyfn keys create` and use it")
        return cls(info["endpoint"], c["access_key_id"], c["secret_access_key"], info.get("region", "us-east-1"))

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------------

    @staticmethod
    def path(bucket: str, key: str = "") -> str:
        return "/" + quote(bucket, safe="") + ("/" + quote(key, safe="/~") if key else "")

    def request(self, method: str, bucket: str = "", key: str = "", query: list[tuple[str, str]] | None = None,
                headers: dict[str, str] | None = None, content: Any = None, stream: bool = False) -> httpx.Response:
        query = query or []
        path = self.path(bucket, key) if bucket else "/"
        signed = sigv4.sign_headers(method, path, query, {"host": self.host, **(headers or {})}, self.access_key_id,
                                    self.secret, self.region, time.time())
        qs = sigv4.canonical_query(query)
        url = self.endpoint + path + (f"?{qs}" if qs else "")
        try:
            req = self._http.build_request(method, url, headers=signed, content=content)
            resp = self._http.send(req, stream=stream)
        except httpx.TransportError as e:
            if isinstance(e, httpx.ConnectError):
                raise ServerUnreachable(self.endpoint, str(e)) from e
            raise PolyfnError(f"object store request failed: {e}") from e
        if resp.status_code >= 400:
            body = resp.read()
            code, message = f"http_{resp.status_code}", resp.reason_phrase
            try:
                root = _strip(ET.fromstring(body))
                code = root.findtext("Code") or code
                message = root.findtext("Message") or message
            except ET.ParseError:
                pass
            if resp.status_code == 404 and method == "HEAD":
                code, message = "NoSuchKey", "The specified key does not exist."
            resp.close()
            raise StorageError(resp.status_code, code, message)
        return resp

    # -- operations -----------------------------------------------------------------------------------

    def make_bucket(self, bucket: str, public: bool = False) -> None:
        self.request("PUT", bucket, headers={"x-amz-acl": "public-read"} if public else {})

    def remove_bucket(self, bucket: str) -> None:
        self.request("DELETE", bucket)

    def list_buckets(self) -> list[dict[str, str]]:
        root = _strip(ET.fromstring(self.request("GET").content))
        return [{"name": b.findtext("Name") or "", "created": b.findtext("CreationDate") or ""}
                for b in root.iter("Bucket")]

    def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "") -> Iterator[dict[str, Any]]:
        """Objects (`{"key", "size", "etag", "last_modified"}`) and prefixes (`{"prefix"}`), every page."""
        token = None
        while True:
            q = [("list-type", "2"), ("prefix", prefix)]
            if delimiter:
                q.append(("delimiter", delimiter))
            if token:
                q.append(("continuation-token", token))
            root = _strip(ET.fromstring(self.request("GET", bucket, query=q).content))
            for p in root.iter("CommonPrefixes"):
                yield {"prefix": p.findtext("Prefix") or ""}
            for c in root.iter("Contents"):
                yield {"key": c.findtext("Key") or "", "size": int(c.findtext("Size") or 0),
                       "etag": (c.findtext("ETag") or "").strip('"'), "last_modified": c.findtext("LastModified")}
            if root.findtext("IsTruncated") != "true":
                return
            token = root.findtext("NextContinuationToken")

    def put_file(self, bucket: str, key: str, path: Path, content_type: str | None = None,
                 progress: Callable[[int], None] | None = None) -> str:
        size = path.stat().st_size

        def body() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    if progress:
                        progress(len(chunk))
                    yield chunk

        headers = {"content-length": str(size)}
        if content_type:
            headers["content-type"] = content_type
        return self.request("PUT", bucket, key, headers=headers, content=body()).headers.get("etag", "").strip('"')

    def get_file(self, bucket: str, key: str, path: Path, progress: Callable[[int], None] | None = None,
                 on_size: Callable[[int], None] | None = None) -> int:
        resp = self.request("GET", bucket, key, stream=True)
        total = int(resp.headers.get("content-length", 0))
        if on_size:
            on_size(total)
        tmp = path.with_name(f".{path.name}.polyfn-part")
        try:
            with open(tmp, "wb") as f:
                for chunk in resp.iter_bytes(CHUNK):
                    f.write(chunk)
                    if progress:
                        progress(len(chunk))
            tmp.replace(path)
        finally:
            resp.close()
            tmp.unlink(missing_ok=True)
        return total

    def get_stream(self, bucket: str, key: str, out: BinaryIO, progress: Callable[[int], None] | None = None) -> int:
        """The object's bytes written to `out` as they arrive (`polyfn storage cp s3://B/K -`); the byte count."""
        resp = self.request("GET", bucket, key, stream=True)
        n = 0
        try:
            for chunk in resp.iter_bytes(CHUNK):
                out.write(chunk)
                n += len(chunk)
                if progress:
                    progress(len(chunk))
            out.flush()
        finally:
            resp.close()
        return n

    def head(self, bucket: str, key: str) -> dict[str, str]:
        return dict(self.request("HEAD", bucket, key).headers)

    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        self.request("PUT", bucket, key, headers={"x-amz-copy-source": self.path(src_bucket, src_key)})

    def delete(self, bucket: str, key: str) -> None:
        self.request("DELETE", bucket, key)

    def presign(self, method: str, bucket: str, key: str, expires: int) -> str:
        path = self.path(bucket, key)
        q = sigv4.presign_query(method, path, self.host, self.access_key_id, self.secret, self.region, time.time(),
                                expires)
        return f"{self.endpoint}{path}?{sigv4.canonical_query(q)}"
