"""The S3-compatible HTTP API: a raw ASGI app (served on the storage port by its own uvicorn server).

Path-style addressing (`/bucket/key`, what boto3 uses with `endpoint_url`) and virtual-host style
(`Host: bucket.<storage domain>`, path `/key`). Per request: parse the host, path and query → authenticate
(SigV4 / SigV2 / OSS, or anonymous) → authorise (anonymous reads only on public-read buckets; loop
protection for function keys) → run the operation on the backend → queue the storage events of
created/deleted objects (durably) → answer with S3's XML. The answer comes after the events are queued, so
a change the client saw succeed always reaches its triggers.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime as _dt
import email.utils
import logging
import os
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from polyfn.auth.keys import storage_allows
from polyfn.storage import sigv4
from polyfn.storage.errors import S3Error, access_denied, invalid_argument
from polyfn.storage.local import LocalBackend, ObjectInfo, PutChecks, validate_bucket_name, validate_key
from polyfn.storage.sigv4 import Identity

log = logging.getLogger("polyfn.storage")

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
OWNER = "<Owner><ID>polyfn</ID><DisplayName>polyfn</DisplayName></Owner>"
MAX_XML_BODY = 1024 * 1024
_XML_CT = [(b"content-type", b"application/xml")]
_PASS_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires")
_RESPONSE_OVERRIDES = {"response-content-type": "content-type", "response-content-language": "content-language",
                       "response-expires": "expires", "response-cache-control": "cache-control",
                       "response-content-disposition": "content-disposition",
                       "response-content-encoding": "content-encoding"}
_CORS = [(b"access-control-allow-origin", b"*"),
         (b"access-control-expose-headers", b"ETag, x-amz-request-id, x-amz-version-id, Content-Range")]


#: True while answering a request signed the OSS way (oss2): XML without the S3 namespace, `x-oss-` headers.
OSS_DIALECT: contextvars.ContextVar[bool] = contextvars.ContextVar("polyfn_oss_dialect", default=False)


class ClientGone(Exception):
    pass


def scope_has_body(scope: dict[str, Any]) -> bool:
    for k, v in scope["headers"]:
        if (k == b"content-length" and v != b"0") or k == b"transfer-encoding":
            return True
    return False


def iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # as S3 and OSS write it


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def parse_query(qs: bytes) -> list[tuple[str, str]]:
    out = []
    if qs:
        for part in qs.decode("latin-1").split("&"):
            if part:
                k, _, v = part.partition("=")
                out.append((unquote(k), unquote(v)))
    return out


async def _body(receive: Callable[[], Any]) -> AsyncIterator[bytes]:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        body = msg.get("body", b"")
        if body:
            yield body
        if not msg.get("more_body"):
            return


async def _read_all(receive: Callable[[], Any], limit: int = MAX_XML_BODY) -> bytes:
    buf = bytearray()
    async for chunk in _body(receive):
        buf += chunk
        if len(buf) > limit:
            raise S3Error(400, "MaxMessageLengthExceeded", "Your request was too big.")
    return bytes(buf)


async def aws_chunked(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Decode `Content-Encoding: aws-chunked` (STREAMING-* payloads): `<hex>[;ext]\\r\\n<data>\\r\\n` … `0…`.

    Chunk signatures are not verified (the seed signature covers the headers); see docs/storage.md.
    """
    buf = bytearray()
    it = chunks.__aiter__()
    need = -1  # bytes of data still to pass through for the current chunk; -1 = expecting a header line

    async def more() -> bool:
        try:
            buf.extend(await it.__anext__())
            return True
        except StopAsyncIteration:
            return False

    while True:
        if need < 0:
            while b"\r\n" not in buf:
                if not await more():
                    raise S3Error(400, "IncompleteBody", "the aws-chunked body ended early")
            line, _, rest = bytes(buf).partition(b"\r\n")
            buf[:] = rest
            try:
                need = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise S3Error(400, "InvalidRequest", "malformed aws-chunked body") from None
            if need == 0:
                async for _ in it:  # trailers: drain
                    pass
                return
            continue
        while len(buf) < need + 2:
            if len(buf) >= need and need > 0:
                break
            if not await more():
                raise S3Error(400, "IncompleteBody", "the aws-chunked body ended early")
        take = min(need, len(buf))
        if take:
            yield bytes(buf[:take])
            del buf[:take]
            need -= take
        if need == 0:
            while len(buf) < 2:
                if not await more():
                    raise S3Error(400, "IncompleteBody", "the aws-chunked body ended early")
            del buf[:2]
            need = -1


def _xml(tag: str, inner: str) -> bytes:
    if OSS_DIALECT.get():
        return f"{XML_DECL}<{tag}>{inner}</{tag}>".encode()
    return f'{XML_DECL}<{tag} xmlns="{NS}">{inner}</{tag}>'.encode()


def _e(s: str) -> str:
    return escape(s)


def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _parse_xml(body: bytes) -> ET.Element:
    try:
        return _strip_ns(ET.fromstring(body))
    except ET.ParseError:
        raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against "
                      "our published schema.") from None


def virtual_bucket(host: str, domains: tuple[str, ...]) -> str:
    """The bucket named by a virtual-host style `Host` (`images.localhost:9000` → `images`), else ''."""
    if not host or host[0] == "[":  # an IPv6 literal names no bucket
        return ""
    name = host.partition(":")[0].lower().rstrip(".")
    for d in domains:
        if name.endswith(d) and len(name) > len(d) + 1 and name[-len(d) - 1] == ".":
            return name[:-len(d) - 1]
    return ""


class Request:
    __slots__ = ("bucket", "client_ip", "headers", "key", "method", "q", "query", "raw_path", "receive",
                 "sent_path")

    def __init__(self, scope: dict[str, Any], receive: Callable[[], Any], domains: tuple[str, ...] = ()) -> None:
        self.method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode()
        self.sent_path = raw.decode("latin-1")  # as the client sent (and SigV4-signed) it
        hdrs: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            val = v.decode("latin-1")
            hdrs[name] = f"{hdrs[name]},{val}" if name in hdrs else val
        self.headers = hdrs
        vhost = virtual_bucket(hdrs.get("host", ""), domains) if domains else ""
        # path style from here on (`/bucket/key`): routing, SigV2/OSS resources and the s3 backend use it
        self.raw_path = f"/{vhost}{self.sent_path}" if vhost else self.sent_path
        self.query = parse_query(scope.get("query_string", b""))
        self.q = dict(self.query)
        try:
            path = unquote(self.raw_path, errors="strict")
        except UnicodeDecodeError:
            raise invalid_argument("the request path is not valid UTF-8") from None
        bucket, _, key = path.lstrip("/").partition("/")
        self.bucket = bucket
        self.key = key
        client = scope.get("client")
        self.client_ip = client[0] if client else ""
        self.receive = receive


class S3App:
    """ASGI app for the S3 API over a backend, with auth (`lookup`) and events (`notifications`)."""

    def __init__(self, backend: LocalBackend, lookup: sigv4.Lookup, notifications: Any, region: str,
                 max_object_size: int, clock: Callable[[], float] = time.time, proxy: Any = None,
                 ensure_key: Callable[[str, float], Any] | None = None, domains: tuple[str, ...] = ()) -> None:
        self.backend = backend
        self.domains = domains  # virtual-host addressing: `BUCKET.<domain>`
        self.lookup = lookup
        self.ensure_key = ensure_key  # async (akid, now): refresh the key cache when needed
        self.notifications = notifications
        self.region = region
        self.max_object_size = max_object_size
        self.clock = clock
        self.proxy = proxy  # `s3` backend: an UpstreamProxy that forwards every authorised request

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] == "lifespan":
            while (msg := await receive())["type"] != "lifespan.shutdown":
                await send({"type": msg["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        request_id = secrets.token_hex(8).upper()
        started = False

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg["headers"] = [*msg.get("headers", []), (b"x-amz-request-id", request_id.encode())]
                if cors:
                    msg["headers"].extend(_CORS)
                if OSS_DIALECT.get():
                    msg["headers"] = [(b"x-oss-" + k[6:] if k.startswith(b"x-amz-") else k, v)
                                      for k, v in msg["headers"]]
            await send(msg)

        cors = False
        method = scope["method"]
        try:
            req = Request(scope, receive, self.domains)
            cors = "origin" in req.headers
            if method == "OPTIONS":
                await self._preflight(req, tracking_send)
                return
            await self.handle(req, tracking_send)
        except ClientGone:
            return
        except S3Error as e:
            if started:
                log.warning("storage: error after the response started: %s", e)
                return
            body = b"" if method == "HEAD" else e.xml(request_id)
            hdrs = [*_XML_CT, (b"content-length", str(len(body)).encode())]
            if method in ("PUT", "POST") and (scope_has_body(scope)):
                # the body may be unread (an early error, or Expect: 100-continue): don't reuse the connection
                hdrs.append((b"connection", b"close"))
            if e.code == "InvalidRange" and "ActualObjectSize" in e.extra:
                hdrs.append((b"content-range", f"bytes */{e.extra['ActualObjectSize']}".encode()))
            await tracking_send({"type": "http.response.start", "status": e.status, "headers": hdrs})
            await tracking_send({"type": "http.response.body", "body": body})
        except Exception:
            log.exception("storage: internal error on %s %s", method, scope.get("path"))
            if started:
                return
            body = S3Error(500, "InternalError", "We encountered an internal error. Please try again.").xml(request_id)
            await tracking_send({"type": "http.response.start", "status": 500,
                                 "headers": [*_XML_CT, (b"content-length", str(len(body)).encode())]})
            await tracking_send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _preflight(self, req: Request, send: Callable[[Any], Any]) -> None:
        allow = req.headers.get("access-control-request-headers", "*")
        await _respond(send, 200, [
            (b"access-control-allow-methods", b"GET, PUT, POST, DELETE, HEAD"),
            (b"access-control-allow-headers", allow.encode("latin-1")),
            (b"access-control-max-age", b"3000")])

    # -- dispatch -------------------------------------------------------------------------------------

    async def handle(self, req: Request, send: Callable[[Any], Any]) -> None:
        now = self.clock()
        if self.ensure_key is not None:
            akid = sigv4.access_key_id(req.headers, req.q)
            if akid:
                await self.ensure_key(akid, now)
        ident = sigv4.authenticate(req.method, _signed_path(req), req.query, req.headers, self.lookup, now)
        m, b, k, q = req.method, req.bucket, req.key, req.q
        if ident is not None and ident.oss:
            OSS_DIALECT.set(True)
            for name in [n for n in req.headers if n.startswith("x-oss-")]:
                req.headers["x-amz-" + name[6:]] = req.headers[name]
        if ident is None:
            self._authorize_anonymous(req)
        elif ident.key is not None and not storage_allows(ident.key, m):
            raise access_denied(f"Access Denied: key {ident.access_key_id} has scope {ident.key.scope!r}, which "
                                "allows reads (GET, HEAD) only; writes need scope 'invoke' or above")
        elif b:
            validate_bucket_name(b)
        if self.proxy is not None:
            await self._proxied(req, ident, send)
            return
        if not b:
            if m == "GET":
                return await self.list_buckets(send)
            raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        if not k:
            if m == "PUT":
                if "acl" in q:
                    return await self.put_bucket_acl(req, send)
                if not q:
                    return await self.create_bucket(req, send)
            elif m == "HEAD":
                self.backend.bucket(b)
                return await _respond(send, 200, [(b"x-amz-bucket-region", self.region.encode())], head=True)
            elif m == "DELETE":
                if not q:
                    self.backend.delete_bucket(b)
                    return await _respond(send, 204, [])
            elif m == "GET":
                if "location" in q:
                    self.backend.bucket(b)
                    loc = "" if self.region == "us-east-1" else _e(self.region)
                    return await _respond(send, 200, _XML_CT, _xml("LocationConstraint", loc))
                if "acl" in q:
                    return await self.get_bucket_acl(req, send)
                if "versioning" in q:
                    self.backend.bucket(b)
                    return await _respond(send, 200, _XML_CT, _xml("VersioningConfiguration", ""))
                if "uploads" in q:
                    return await self.list_uploads(req, send)
                if not (set(q) - {"list-type", "prefix", "delimiter", "max-keys", "continuation-token",
                                  "start-after", "encoding-type", "fetch-owner", "marker"}):
                    return await self.list_objects(req, send)
            elif m == "POST" and "delete" in q:
                return await self.delete_objects(req, send, ident)
            raise S3Error(501, "NotImplemented", "A header or query you provided implies functionality that is not "
                          "implemented.")
        validate_key(k)
        if m in ("GET", "HEAD") and "uploadId" in q:
            return await self.list_parts(req, send)
        if m in ("GET", "HEAD"):
            if set(q) - set(_RESPONSE_OVERRIDES) - {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                                                   "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature",
                                                   "X-Amz-Content-Sha256", "AWSAccessKeyId", "Signature",
                                                   "Expires", "x-id", "partNumber", "versionId",
                                                   "OSSAccessKeyId", "objectMeta"}:
                raise S3Error(501, "NotImplemented", f"object sub-resource {sorted(q)!r} is not implemented")
            return await self.get_object(req, send)
        if m == "PUT":
            if "uploadId" in q and "partNumber" in q:
                return await self.upload_part(req, send)
            if "x-amz-copy-source" in req.headers:
                return await self.copy_object(req, send, ident)
            return await self.put_object(req, send, ident)
        if m == "DELETE":
            if "uploadId" in q:
                self.backend.abort_upload(b, k, q["uploadId"])
                return await _respond(send, 204, [])
            return await self.delete_object(req, send, ident)
        if m == "POST":
            if "uploads" in q:
                return await self.create_upload(req, send, ident)
            if "uploadId" in q:
                return await self.complete_upload(req, send, ident)
        raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    def _authorize_anonymous(self, req: Request) -> None:
        if req.method in ("GET", "HEAD") and req.bucket and not req.q.keys() - {"list-type", "prefix", "delimiter",
                                                                                "max-keys", "continuation-token",
                                                                                "start-after", "encoding-type",
                                                                                *_RESPONSE_OVERRIDES}:
            try:
                public = self.public(req.bucket)
            except S3Error:
                public = False
            if public:
                return
        raise access_denied("Access Denied: this request is not signed and the bucket is not public-read; sign it "
                            "with a polyfn storage key (`polyfn storage keys create`)")

    def public(self, bucket: str) -> bool:
        if self.proxy is not None:
            return self.proxy.is_public(bucket)
        return self.backend.bucket(bucket).public

    def _check_loop(self, bucket: str, key: str, event: str, ident: Identity | None) -> None:
        if ident is not None and ident.function and self.notifications is not None:
            self.notifications.check_loop(bucket, key, event, ident.function)

    async def _emit(self, event: str, bucket: str, key: str, info: ObjectInfo | None, ip: str) -> None:
        """Queue the change's trigger deliveries (durably): called after the change, before the answer."""
        if self.notifications is not None:
            if info is None:
                await self.notifications.emit(event, bucket, key, source_ip=ip)
            else:
                await self.notifications.emit(event, bucket, key, info.size, info.etag, info.content_type, ip)

    # -- buckets --------------------------------------------------------------------------------------

    async def list_buckets(self, send: Callable[[Any], Any]) -> None:
        items = "".join(f"<Bucket><Name>{_e(b.name)}</Name><CreationDate>{iso(b.created)}</CreationDate></Bucket>"
                        for b in self.backend.list_buckets())
        await _respond(send, 200, _XML_CT, _xml("ListAllMyBucketsResult", f"{OWNER}<Buckets>{items}</Buckets>"))

    async def create_bucket(self, req: Request, send: Callable[[Any], Any]) -> None:
        body = await _read_all(req.receive)
        if body.strip():
            root = _parse_xml(body)
            loc = root.findtext("LocationConstraint")
            if loc and loc != self.region:
                raise S3Error(400, "IllegalLocationConstraintException",
                              f"this endpoint serves region {self.region!r}, not {loc!r}")
        acl = req.headers.get("x-amz-acl", "private")
        if acl not in ("private", "public-read"):
            raise S3Error(501, "NotImplemented", f"canned ACL {acl!r} is not supported (private, public-read)")
        self.backend.create_bucket(req.bucket, acl == "public-read", self.clock())
        await _respond(send, 200, [(b"location", f"/{req.bucket}".encode())])

    async def put_bucket_acl(self, req: Request, send: Callable[[Any], Any]) -> None:
        await _read_all(req.receive)
        acl = req.headers.get("x-amz-acl")
        if acl not in ("private", "public-read"):
            raise S3Error(501, "NotImplemented", "only the canned ACLs private and public-read are supported "
                          "(x-amz-acl header)")
        self.backend.set_public(req.bucket, acl == "public-read")
        await _respond(send, 200, [])

    async def get_bucket_acl(self, req: Request, send: Callable[[Any], Any]) -> None:
        public = self.backend.bucket(req.bucket).public
        xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        grants = (f'<Grant><Grantee {xsi} xsi:type="CanonicalUser"><ID>polyfn</ID><DisplayName>polyfn</DisplayName>'
                  "</Grantee><Permission>FULL_CONTROL</Permission></Grant>")
        if public:
            grants += (f'<Grant><Grantee {xsi} xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers'
                       "</URI></Grantee><Permission>READ</Permission></Grant>")
        await _respond(send, 200, _XML_CT, _xml("AccessControlPolicy",
                                                f"{OWNER}<AccessControlList>{grants}</AccessControlList>"))

    async def list_objects(self, req: Request, send: Callable[[Any], Any]) -> None:
        q = req.q
        v2 = q.get("list-type") == "2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        url = q.get("encoding-type") == "url"
        try:
            max_keys = min(int(q.get("max-keys", "1000")), 1000)
        except ValueError:
            raise invalid_argument("max-keys must be an integer") from None
        if max_keys < 0:
            raise invalid_argument("max-keys must be >= 0")
        token = q.get("continuation-token")
        if v2:
            after = q.get("start-after", "")
            if token is not None:
                try:
                    after = max(after, base64.urlsafe_b64decode(token.encode()).decode())
                except (ValueError, UnicodeDecodeError):
                    raise invalid_argument("The continuation token provided is incorrect") from None
        else:
            after = q.get("marker", "")
        enc = (lambda s: quote(s, safe="/")) if url else (lambda s: s)
        if max_keys == 0:
            contents, prefixes, truncated, last = [], [], False, ""
            self.backend.bucket(req.bucket)
        else:
            contents, prefixes, truncated, last = await asyncio.to_thread(
                self.backend.list_objects, req.bucket, prefix, delimiter, after, max_keys)
        parts = [f"<Name>{_e(req.bucket)}</Name><Prefix>{_e(enc(prefix))}</Prefix>"]
        if v2:
            parts.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
        else:
            parts.append(f"<Marker>{_e(enc(after))}</Marker>")
        parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
        if delimiter:
            parts.append(f"<Delimiter>{_e(enc(delimiter))}</Delimiter>")
        parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        if v2:
            if token is not None:
                parts.append(f"<ContinuationToken>{_e(token)}</ContinuationToken>")
            if "start-after" in q:
                parts.append(f"<StartAfter>{_e(enc(q['start-after']))}</StartAfter>")
            if truncated:
                nxt = base64.urlsafe_b64encode(last.encode()).decode()
                parts.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
        elif truncated:
            parts.append(f"<NextMarker>{_e(enc(last))}</NextMarker>")
        owner = OWNER if (not v2 or q.get("fetch-owner") == "true") else ""
        if OSS_DIALECT.get():
            owner += "<Type>Normal</Type>"
        for o in contents:
            parts.append(f"<Contents><Key>{_e(enc(o.key))}</Key><LastModified>{iso(o.last_modified)}</LastModified>"
                         f"<ETag>&quot;{o.etag}&quot;</ETag><Size>{o.size}</Size>{owner}"
                         "<StorageClass>STANDARD</StorageClass></Contents>")
        for p in prefixes:
            parts.append(f"<CommonPrefixes><Prefix>{_e(enc(p))}</Prefix></CommonPrefixes>")
        await _respond(send, 200, _XML_CT, _xml("ListBucketResult", "".join(parts)))

    async def delete_objects(self, req: Request, send: Callable[[Any], Any], ident: Identity | None) -> None:
        root = _parse_xml(await _read_all(req.receive))
        quiet = (root.findtext("Quiet") or "").lower() == "true"
        out, gone = [], []
        for obj in root.findall("Object"):
            key = obj.findtext("Key") or ""
            try:
                validate_key(key)
                self._check_loop(req.bucket, key, "deleted", ident)
                existed = self.backend.delete_object(req.bucket, key)
            except S3Error as e:
                out.append(f"<Error><Key>{_e(key)}</Key><Code>{e.code}</Code><Message>{_e(e.message)}</Message></Error>")
                continue
            if existed:
                gone.append(key)
            if not quiet:
                out.append(f"<Deleted><Key>{_e(key)}</Key></Deleted>")
        await asyncio.gather(*(self._emit("deleted", req.bucket, k, None, req.client_ip) for k in gone))
        await _respond(send, 200, _XML_CT, _xml("DeleteResult", "".join(out)))

    # -- objects --------------------------------------------------------------------------------------

    def _new_info(self, req: Request) -> ObjectInfo:
        h = req.headers
        meta = {k[11:]: v for k, v in h.items() if k.startswith("x-amz-meta-")}
        kept = {k: h[k] for k in _PASS_HEADERS if k in h and k != "content-encoding"}
        # aws-chunked is how the body travelled, not what it is: keep only the object's own encodings
        encodings = [e.strip() for e in h.get("content-encoding", "").split(",") if e.strip() not in ("", "aws-chunked")]
        if encodings:
            kept["content-encoding"] = ",".join(encodings)
        return ObjectInfo(req.key, 0, "", self.clock(), h.get("content-type") or "binary/octet-stream", meta, kept)

    def _payload(self, req: Request, ident: Identity | None) -> tuple[AsyncIterator[bytes], PutChecks]:
        h = req.headers
        chunked = (ident is not None and ident.chunked) or "aws-chunked" in h.get("content-encoding", "")
        length_h = h.get("x-amz-decoded-content-length") if chunked else h.get("content-length")
        length = None
        if length_h is not None:
            try:
                length = int(length_h)
            except ValueError:
                raise invalid_argument("Content-Length must be an integer") from None
            if length > self.max_object_size:
                raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                              ProposedSize=str(length), MaxSizeAllowed=str(self.max_object_size))
        elif "transfer-encoding" not in h and not chunked:
            raise S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        chunks = _body(req.receive)
        if chunked:
            chunks = aws_chunked(chunks)
        checks = PutChecks(h.get("content-md5"), ident.payload_sha256 if ident else None,
                           h.get("x-amz-checksum-crc32"), length)
        return chunks, checks

    async def put_object(self, req: Request, send: Callable[[Any], Any], ident: Identity | None) -> None:
        self._check_loop(req.bucket, req.key, "created", ident)
        chunks, checks = self._payload(req, ident)
        info = await self.backend.put_object(req.bucket, req.key, chunks, self._new_info(req), checks)
        hdrs = [(b"etag", f'"{info.etag}"'.encode())]
        if "crc32" in info.checksums:
            hdrs.append((b"x-amz-checksum-crc32", info.checksums["crc32"].encode()))
        await self._emit("created", req.bucket, req.key, info, req.client_ip)
        await _respond(send, 200, hdrs)

    async def get_object(self, req: Request, send: Callable[[Any], Any]) -> None:
        head = req.method == "HEAD"
        info, fd = self.backend.open_object(req.bucket, req.key)
        try:
            h = req.headers
            etag = f'"{info.etag}"'
            if "if-match" in h and h["if-match"] not in ("*", etag) and h["if-match"].strip('"') != info.etag:
                raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not "
                              "hold", Condition="If-Match")
            inm = h.get("if-none-match")
            if inm is not None and (inm == "*" or inm.strip('"') == info.etag):
                os.close(fd)
                fd = -1
                return await _respond(send, 304, [(b"etag", etag.encode())], head=True)
            size = info.size
            start, end, status = 0, size, 200
            rng = h.get("range")
            if "partNumber" in req.q:
                if req.q["partNumber"] != "1":
                    raise S3Error(416, "InvalidPartNumber", "The requested partnumber is not satisfiable")
            if rng:
                start, end, status = _parse_range(rng, size)
            hdrs = [(b"content-type", info.content_type.encode("latin-1", "replace")),
                    (b"content-length", str(end - start).encode()),
                    (b"etag", etag.encode()),
                    (b"last-modified", http_date(info.last_modified).encode()),
                    (b"accept-ranges", b"bytes")]
            if status == 206:
                hdrs.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
            for k, v in info.headers.items():
                hdrs.append((k.encode(), v.encode("latin-1", "replace")))
            for k, v in info.metadata.items():
                hdrs.append((b"x-amz-meta-" + k.encode("latin-1", "replace"), v.encode("latin-1", "replace")))
            if "crc32" in info.checksums and h.get("x-amz-checksum-mode", "").upper() == "ENABLED" and status == 200:
                hdrs.append((b"x-amz-checksum-crc32", info.checksums["crc32"].encode()))
            for qk, hk in _RESPONSE_OVERRIDES.items():
                if qk in req.q:
                    hdrs = [x for x in hdrs if x[0] != hk.encode()] + [(hk.encode(), req.q[qk].encode("latin-1", "replace"))]
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            if head or end == start:
                await send({"type": "http.response.body", "body": b""})
                return
            if end - start <= 256 * 1024:  # small: one read, one send
                body = os.pread(fd, end - start, start)
                await send({"type": "http.response.body", "body": body})
                return
            stream, fd = LocalBackend.read_range(fd, start, end), -1
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            if fd >= 0:
                os.close(fd)

    async def delete_object(self, req: Request, send: Callable[[Any], Any], ident: Identity | None) -> None:
        self._check_loop(req.bucket, req.key, "deleted", ident)
        if self.backend.delete_object(req.bucket, req.key):
            await self._emit("deleted", req.bucket, req.key, None, req.client_ip)
        await _respond(send, 204, [])

    async def copy_object(self, req: Request, send: Callable[[Any], Any], ident: Identity | None) -> None:
        src = unquote(req.headers["x-amz-copy-source"].split("?", 1)[0]).lstrip("/")
        sb, _, sk = src.partition("/")
        if not sb or not sk:
            raise invalid_argument("x-amz-copy-source must be /bucket/key")
        self._check_loop(req.bucket, req.key, "created", ident)
        await _read_all(req.receive)
        directive = req.headers.get("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise invalid_argument("x-amz-metadata-directive must be COPY or REPLACE")
        if (sb, sk) == (req.bucket, req.key) and directive == "COPY":
            raise S3Error(400, "InvalidRequest", "This copy request is illegal because it is trying to copy an "
                          "object to itself without changing the object's metadata, storage class, website "
                          "redirect location or encryption attributes.")
        src_info, fd = self.backend.open_object(sb, sk)
        if directive == "REPLACE":
            info = self._new_info(req)
        else:
            info = ObjectInfo(req.key, 0, "", self.clock(), src_info.content_type, dict(src_info.metadata),
                              dict(src_info.headers))
        info.last_modified = self.clock()
        new = await self.backend.put_object(req.bucket, req.key, LocalBackend.read_range(fd, 0, src_info.size), info,
                                            PutChecks())
        await self._emit("created", req.bucket, req.key, new, req.client_ip)
        await _respond(send, 200, _XML_CT, _xml("CopyObjectResult", f"<LastModified>{iso(new.last_modified)}"
                                                f"</LastModified><ETag>&quot;{new.etag}&quot;</ETag>"))

    # -- multipart ------------------------------------------------------------------------------------

    async def create_upload(self, req: Request, send: Callable[[Any], Any], ident: Identity | None) -> None:
        self._check_loop(req.bucket, req.key, "created", ident)
        await _read_all(req.receive)
        upload_id = self.backend.create_upload(req.bucket, req.key, self._new_info(req))
        await _respond(send, 200, _XML_CT, _xml("InitiateMultipartUploadResult", f"<Bucket>{_e(req.bucket)}</Bucket>"
                                                f"<Key>{_e(req.key)}</Key><UploadId>{upload_id}</UploadId>"))

    async def upload_part(self, req: Request, send: Callable[[Any], Any]) -> None:
        try:
            number = int(req.q["partNumber"])
        except ValueError:
            raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive") from None
        if "x-amz-copy-source" in req.headers:
            raise S3Error(501, "NotImplemented", "UploadPartCopy is not implemented")
        chunks, checks = self._payload(req, None)
        etag = await self.backend.put_part(req.bucket, req.key, req.q["uploadId"], number, chunks, checks)
        await _respond(send, 200, [(b"etag", f'"{etag}"'.encode())])

    async def complete_upload(self, req: Request, send: Callable[[Any], Any], ident: Identity | None) -> None:
        self._check_loop(req.bucket, req.key, "created", ident)
        root = _parse_xml(await _read_all(req.receive))
        parts = []
        for p in root.findall("Part"):
            try:
                parts.append((int(p.findtext("PartNumber") or ""), p.findtext("ETag") or ""))
            except ValueError:
                raise S3Error(400, "MalformedXML", "PartNumber must be an integer") from None
        info = await self.backend.complete_upload(req.bucket, req.key, req.q["uploadId"], parts)
        await self._emit("created", req.bucket, req.key, info, req.client_ip)
        await _respond(send, 200, _XML_CT, _xml(
            "CompleteMultipartUploadResult", f"<Location>/{_e(req.bucket)}/{_e(req.key)}</Location><Bucket>"
            f"{_e(req.bucket)}</Bucket><Key>{_e(req.key)}</Key><ETag>&quot;{info.etag}&quot;</ETag>"))

    async def list_parts(self, req: Request, send: Callable[[Any], Any]) -> None:
        parts = self.backend.list_parts(req.bucket, req.key, req.q["uploadId"])
        items = "".join(f"<Part><PartNumber>{p.key}</PartNumber><LastModified>{iso(p.last_modified)}</LastModified>"
                        f"<ETag>&quot;{p.etag}&quot;</ETag><Size>{p.size}</Size></Part>" for p in parts)
        await _respond(send, 200, _XML_CT, _xml(
            "ListPartsResult", f"<Bucket>{_e(req.bucket)}</Bucket><Key>{_e(req.key)}</Key><UploadId>"
            f"{_e(req.q['uploadId'])}</UploadId><PartNumberMarker>0</PartNumberMarker>"
            f"<NextPartNumberMarker>{parts[-1].key if parts else 0}</NextPartNumberMarker><MaxParts>10000</MaxParts>"
            f"<IsTruncated>false</IsTruncated>{items}"))

    async def list_uploads(self, req: Request, send: Callable[[Any], Any]) -> None:
        ups = self.backend.list_uploads(req.bucket)
        items = "".join(f"<Upload><Key>{_e(u['key'])}</Key><UploadId>{u['upload_id']}</UploadId>"
                        f"<Initiated>{iso(u['created'])}</Initiated><StorageClass>STANDARD</StorageClass></Upload>"
                        for u in ups)
        await _respond(send, 200, _XML_CT, _xml(
            "ListMultipartUploadsResult", f"<Bucket>{_e(req.bucket)}</Bucket><MaxUploads>1000</MaxUploads>"
            f"<IsTruncated>false</IsTruncated>{items}"))

    # -- s3 backend -----------------------------------------------------------------------------------

    async def _proxied(self, req: Request, ident: Identity | None, send: Callable[[Any], Any]) -> None:
        event = _event_for(req)
        if event is not None:
            self._check_loop(req.bucket, req.key, event, ident)
        chunked = (ident is not None and ident.chunked) or "aws-chunked" in req.headers.get("content-encoding", "")
        body: AsyncIterator[bytes] = _body(req.receive)
        if chunked:
            body = aws_chunked(body)
        deleted: list[str] = []
        if req.method == "POST" and not req.key and "delete" in req.q:  # DeleteObjects: know the keys
            raw = await _read_all(req.receive)
            deleted = [o.findtext("Key") or "" for o in _parse_xml(raw).findall("Object")]
            for key in deleted:
                self._check_loop(req.bucket, key, "deleted", ident)
            body = _once(raw)
        # A change's answer (small: empty or a short XML) is held until its events are queued.
        held: list[dict[str, Any]] = []
        changes = event is not None or bool(deleted)

        async def hold(msg: dict[str, Any]) -> None:
            held.append(msg)

        status, info = await self.proxy.forward(req, body, chunked, hold if changes else send)
        if status < 300:
            if req.method == "PUT" and not req.key and req.bucket:
                acl = req.headers.get("x-amz-acl")
                if acl in ("private", "public-read"):
                    self.proxy.set_public(req.bucket, acl == "public-read")
            emits = [self._emit("deleted", req.bucket, key, None, req.client_ip) for key in deleted]
            if event is not None:
                emits.append(self._emit(event, req.bucket, req.key, info, req.client_ip))
            await asyncio.gather(*emits)
        for msg in held:
            await send(msg)


def _signed_path(req: Request) -> str:
    """The path a signature covers: SigV4 signs the path as sent; SigV2 and OSS sign `/bucket/key` whatever
    the addressing style."""
    if req.sent_path != req.raw_path and (req.headers.get("authorization", "").startswith("AWS4-")
                                          or "X-Amz-Algorithm" in req.q):
        return req.sent_path
    return req.raw_path


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _event_for(req: Request) -> str | None:
    """Which storage event a successful request produces (s3 backend)."""
    if not req.key:
        return None
    q = req.q
    if req.method == "PUT" and not ("uploadId" in q or "acl" in q or "tagging" in q):
        return "created"
    if req.method == "POST" and "uploadId" in q:
        return "created"
    if req.method == "DELETE" and "uploadId" not in q:
        return "deleted"
    return None


def _parse_range(value: str, size: int) -> tuple[int, int, int]:
    """(start, end exclusive, status) for a `Range` header; multiple ranges are ignored (whole object)."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return 0, size, 200
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise ValueError
            start, end = max(size - n, 0), size
        else:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
            if int(last or size) < start:
                return 0, size, 200
    except ValueError:
        return 0, size, 200
    if start >= size:
        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable", ActualObjectSize=str(size))
    return start, end, 206


async def _respond(send: Callable[[Any], Any], status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"",
                   head: bool = False) -> None:
    if not head:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})

