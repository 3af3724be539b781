"""The `s3` backend: polyfn authenticates the client with its own keys, then forwards the request to an
upstream S3 (AWS, SeaweedFS, MinIO, moto …) re-signed with the upstream credentials, streams the answer
back unchanged, and emits storage events for what succeeded.

Bodies are streamed both ways (never buffered); aws-chunked uploads are decoded and forwarded as plain
bodies with `UNSIGNED-PAYLOAD`. Public-read is a polyfn-side flag (kept in `<storage dir>/public.json`),
set by CreateBucket/PutBucketAcl with `x-amz-acl`, because upstream ACLs may be disabled.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from polyfn.config import Settings
from polyfn.storage import sigv4
from polyfn.storage.errors import S3Error
from polyfn.storage.local import ObjectInfo

_DROP = frozenset({"host", "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-decoded-content-length",
                   "transfer-encoding", "connection", "expect", "content-length", "user-agent", "accept-encoding",
                   "x-amz-trailer", "x-amz-security-token", "keep-alive", "te", "upgrade"})
_DROP_RESPONSE = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"x-amz-request-id", b"server",
                            b"date"})


class UpstreamProxy:
    def __init__(self, settings: Settings, root: Path, clock: Callable[[], float] = time.time) -> None:
        if not settings.storage_upstream_url:
            raise ValueError("storage_backend 's3' needs storage_upstream_url (POLYFN_STORAGE_UPSTREAM_URL)")
        self.url = settings.storage_upstream_url.rstrip("/")
        self.host = urlsplit(self.url).netloc
        self.access_key = settings.storage_upstream_access_key_id or ""
        self.secret = settings.storage_upstream_secret_access_key or ""
        self.region = settings.storage_upstream_region
        self.clock = clock
        self._public_file = root / "public.json"
        self._public: set[str] = set()
        self._http: Any = None  # httpx.AsyncClient once started
        self._transport_error: type[Exception] = OSError

    async def start(self) -> None:
        try:
            self._public = set(json.loads(self._public_file.read_text()))
        except (FileNotFoundError, ValueError):
            self._public = set()
        import httpx  # (only with an upstream S3)

        self._transport_error = httpx.TransportError
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, read=None), limits=httpx.Limits(
            max_connections=256, max_keepalive_connections=64))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def is_public(self, bucket: str) -> bool:
        return bucket in self._public

    def set_public(self, bucket: str, public: bool) -> None:
        (self._public.add if public else self._public.discard)(bucket)
        tmp = self._public_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self._public)))
        os.replace(tmp, self._public_file)

    def _signed(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> dict[str, str]:
        return sigv4.sign_headers(method, path, query, {"host": self.host, **headers}, self.access_key, self.secret,
                                  self.region, self.clock())

    async def forward(self, req: Any, body: AsyncIterator[bytes], chunked: bool, send: Callable[[Any], Any],
                      ) -> tuple[int, ObjectInfo | None]:
        assert self._http is not None
        h = req.headers
        fwd = {k: v for k, v in h.items() if k not in _DROP and not k.startswith("amz-sdk-")}
        if "content-encoding" in fwd:
            rest = ",".join(p for p in (x.strip() for x in fwd["content-encoding"].split(",")) if p != "aws-chunked")
            if rest:
                fwd["content-encoding"] = rest
            else:
                del fwd["content-encoding"]
        length = h.get("x-amz-decoded-content-length") if chunked else h.get("content-length")
        has_body = req.method in ("PUT", "POST")
        if has_body:
            fwd["content-length"] = length or "0"
        path = sigv4.canonical_uri(req.raw_path)
        signed = self._signed(req.method, path, req.query, fwd)
        qs = sigv4.canonical_query(req.query)
        url = self.url + path + (f"?{qs}" if qs else "")
        request = self._http.build_request(req.method, url, headers=signed, content=body if has_body else None)
        try:
            resp = await self._http.send(request, stream=True)
        except self._transport_error as e:
            raise S3Error(502, "ServiceUnavailable", f"the upstream S3 at {self.url} is unreachable: {e}") from e
        try:
            headers = [(k, v) for k, v in resp.headers.raw if k.lower() not in _DROP_RESPONSE]
            await send({"type": "http.response.start", "status": resp.status_code, "headers": headers})
            if req.method != "HEAD":
                async for chunk in resp.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            status = resp.status_code
            etag = resp.headers.get("etag", "").strip('"')
        finally:
            await resp.aclose()
        if status >= 300 or not req.key or req.method not in ("PUT", "POST"):
            return status, None
        if req.method == "PUT" and "x-amz-copy-source" not in h and "uploadId" not in req.q:
            return status, ObjectInfo(req.key, int(length or 0), etag, self.clock(), h.get("content-type", ""))
        return status, await self._head(req)

    async def _head(self, req: Any) -> ObjectInfo | None:
        """Size and ETag of an object just written by copy / multipart completion."""
        assert self._http is not None
        path = sigv4.canonical_uri("/" + req.bucket + "/" + _quote_key(req.key))
        try:
            r = await self._http.head(self.url + path, headers=self._signed("HEAD", path, [], {}))
        except self._transport_error:
            return ObjectInfo(req.key, 0, "", self.clock())
        if r.status_code != 200:
            return ObjectInfo(req.key, 0, "", self.clock())
        return ObjectInfo(req.key, int(r.headers.get("content-length", 0)), r.headers.get("etag", "").strip('"'),
                          self.clock(), r.headers.get("content-type", ""))


def _quote_key(key: str) -> str:
    from urllib.parse import quote

    return quote(key, safe="/~")
