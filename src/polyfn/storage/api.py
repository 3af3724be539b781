"""The S3-compatible HTTP API: a raw ASGI app (served on the storage port by its own uvicorn server).

Path-style addressing (`/bucket/key`, what boto3 uses with `endpoint_url`) and virtual-host style
(`Host: bucket.<storage domain>`, path `/key`). Per request: parse the host, path and query → authenticate
(SigV4 / SigV2 / OSS, or anonymous) → resolve the route (`routes.py`: one table, nothing falls through) →
authorise (the route says whether it writes and what an unsigned request may do) → run the handler
(`bucket_ops`, `object_ops`, … over the backend) → queue the storage events of created/deleted objects
(durably) → answer with S3's XML. The answer comes after the events are queued, so a change the client saw
succeed always reaches its triggers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

from polyfn.auth import sts
from polyfn.auth.keys import storage_allows
from polyfn.storage import cors, policy, routes, sigv4
from polyfn.storage.acl import public_grant
from polyfn.storage.errors import S3Error, access_denied, no_such_bucket
from polyfn.storage.local import LocalBackend
from polyfn.storage.model import (
    BucketInfo,
    ObjectInfo,
    validate_bucket_name,
    validate_key,
)
from polyfn.storage.sigv4 import Identity
from polyfn.storage.wire import (
    OSS_DIALECT,
    OWNER_ID,
    XML_CT,
    ClientGone,
    Request,
    Send,
    aws_chunked,
    body_chunks,
    once,
    parse_xml,
    read_all,
    scope_has_body,
)
from polyfn.tenancy import DEFAULT, key_namespace

log = logging.getLogger("polyfn.storage")


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
        cors_headers: list[tuple[bytes, bytes]] = []

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg["headers"] = [*msg.get("headers", []), (b"x-amz-request-id", request_id.encode()),
                                  *cors_headers]
                if OSS_DIALECT.get():
                    msg["headers"] = [(b"x-oss-" + k[6:] if k.startswith(b"x-amz-") else k, v)
                                      for k, v in msg["headers"]]
            await send(msg)

        method = scope["method"]
        try:
            req = Request(scope, receive, self.domains)
            if method == "OPTIONS":
                await self._preflight(req, tracking_send)
                return
            if "origin" in req.headers and req.bucket:
                cors_headers = self._cors_headers(req)
            await self.handle(req, tracking_send)
        except ClientGone:
            return
        except S3Error as e:
            if started:
                log.warning("storage: error after the response started: %s", e)
                return
            body = b"" if method == "HEAD" else e.xml(request_id)
            hdrs = [*XML_CT, (b"content-length", str(len(body)).encode()), *e.headers]
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
                                 "headers": [*XML_CT, (b"content-length", str(len(body)).encode())]})
            await tracking_send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    # -- CORS -----------------------------------------------------------------------------------------

    def _bucket_rules(self, bucket: str) -> list[dict[str, Any]]:
        if self.proxy is not None:
            return cors.DEFAULT_RULES
        try:
            return self.backend.bucket(bucket).cors
        except S3Error:
            return []

    def _cors_headers(self, req: Request) -> list[tuple[bytes, bytes]]:
        method = req.headers.get("access-control-request-method", req.method)
        rule = cors.match(self._bucket_rules(req.bucket), req.headers["origin"], method, ())
        return cors.response_headers(rule, req.headers["origin"]) if rule is not None else []

    async def _preflight(self, req: Request, send: Send) -> None:
        origin = req.headers.get("origin")
        want = req.headers.get("access-control-request-method")
        if not req.bucket or origin is None or want is None:
            raise S3Error(400, "BadRequest", "Insufficient information. Origin request header needed."
                          if origin is None else "Invalid Access-Control-Request-Method")
        self.backend.bucket(req.bucket) if self.proxy is None else None
        asked = tuple(h.strip().lower() for h in req.headers.get("access-control-request-headers", "").split(",")
                      if h.strip())
        rule = cors.match(self._bucket_rules(req.bucket), origin, want, asked)
        if rule is None:
            raise S3Error(403, "AccessForbidden", "CORSResponse: This CORS request is not allowed. This is usually "
                          "because the evalution of Origin, request method / Access-Control-Request-Method or "
                          "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                          Method=want, ResourceType="OBJECT" if req.key else "BUCKET")
        hdrs = cors.response_headers(rule, origin, preflight=True, asked=asked)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*hdrs, (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    # -- dispatch -------------------------------------------------------------------------------------

    async def handle(self, req: Request, send: Send) -> None:
        now = self.clock()
        if self.ensure_key is not None:
            akid = sigv4.access_key_id(req.headers, req.q)
            if akid:
                await self.ensure_key(akid, now)
        ident = sigv4.authenticate(req.method, _signed_path(req), req.query, req.headers, self.lookup, now)
        if ident is not None and ident.oss:
            OSS_DIALECT.set(True)
            for name in [n for n in req.headers if n.startswith("x-oss-")]:
                req.headers["x-amz-" + name[6:]] = req.headers[name]
        if req.bucket:
            validate_bucket_name(req.bucket)
        if req.key:
            validate_key(req.key)
        route = routes.resolve(req.method, req.level, req.q, req.headers)
        owner = req.headers.get("x-amz-expected-bucket-owner")
        if owner is not None and owner != OWNER_ID:
            raise access_denied("Access Denied: the bucket is not owned by the expected owner")
        if self.proxy is None and req.bucket:
            self._apply_policy(req, route, ident)
        if ident is None:
            if not req.policy_allows:
                self._authorize_anonymous(req, route)
        elif ident.key is not None and not storage_allows(ident.key, "PUT" if route.write else "GET"):
            raise access_denied(f"Access Denied: key {ident.access_key_id} has scope {ident.key.scope!r}, which "
                                + ("allows no object storage (it only ingests log lines)" if ident.key.scope == "ingest"
                                   else "allows reads (GET, HEAD) only; writes need scope 'invoke' or above"))
        elif ident.key is not None and (why := sts.refusal(ident.key, "PUT" if route.write else "GET", req.bucket,
                                                             req.key, req.q, req.headers)) is not None:
            raise access_denied(f"Access Denied: {why}")
        if ident is not None and ident.key is not None and req.bucket:
            self._confine(req, route, ident.key)
        if self.proxy is not None:
            if route.anonymous == "post":
                raise routes.not_implemented("POST object uploads with the s3 backend")
            await self._proxied(req, ident, send)
            return
        await route.handler(self, req, send, ident)  # type: ignore[misc]

    def _confine(self, req: Request, route: routes.Route, key: Any) -> None:
        """A key of one namespace reaches only its namespace's buckets: another's is answered exactly as a bucket
        that does not exist (tenancy.py; CreateBucket of a taken name answers BucketAlreadyExists, as on S3)."""
        ns = key_namespace(key)
        if self.proxy is not None and ns not in (None, DEFAULT):
            raise access_denied("Access Denied: namespaces' buckets need the local storage backend")
        if ns is None or route.operation == "CreateBucket" or self.proxy is not None:
            return
        try:
            owner = self.backend.bucket(req.bucket).namespace
        except S3Error:
            return  # (absent: the operation answers NoSuchBucket itself)
        if owner != ns:
            raise no_such_bucket(req.bucket)

    def _authorize_anonymous(self, req: Request, route: routes.Route) -> None:
        """An unsigned request: reads of public-read buckets and objects (the object's own ACL is checked by
        GetObject), writes to public-read-write buckets, POST uploads (their policy is the signature)."""
        if route.anonymous == "post":
            return
        if req.bucket and self.proxy is None:
            self.backend.bucket(req.bucket)  # a missing bucket is NoSuchBucket for anyone, as on S3
        if route.anonymous and req.bucket:
            if self.proxy is not None:
                if route.anonymous == "read" and self.proxy.is_public(req.bucket):
                    return
            else:
                bucket = self.backend.bucket(req.bucket)  # a missing bucket is NoSuchBucket, as on S3
                if route.anonymous == "read" and (req.key or public_grant(bucket, bucket.acl, "READ")):
                    return  # objects: GetObject checks the object's ACL (or the bucket's public-read)
                if route.anonymous == "write" and public_grant(bucket, bucket.acl, "WRITE"):
                    return
        raise access_denied("Access Denied: this request is not signed and the bucket is not public-read; sign it "
                            "with a polyfn storage key (`polyfn storage keys create`)")

    def _apply_policy(self, req: Request, route: routes.Route, ident: Identity | None) -> None:
        """The bucket's policy: an explicit Deny refuses the request; an Allow for everyone admits it unsigned."""
        try:
            bucket = self.backend.bucket(req.bucket)
        except S3Error:
            return
        text = bucket.policy
        if not text or route.operation.startswith(("PutBucketPolicy", "GetBucketPolicy", "DeleteBucketPolicy")):
            return
        doc = policy.parse(text)
        action = policy.action_of(route.operation, "versionId" in req.q)
        resource = f"arn:aws:s3:::{req.bucket}" + (f"/{req.key}" if req.key else "")
        verdict = policy.evaluate(doc, action, resource, ident is None, _policy_context(self, req))
        if verdict == "deny":
            raise access_denied("Access Denied: the bucket policy denies this request")
        # RestrictPublicBuckets: a public policy admits no one from outside (here: no unsigned request)
        req.policy_allows = verdict == "allow" and not (
            ident is None and bucket.public_access_block.get("RestrictPublicBuckets") and policy.is_public(doc))

    def may_read_anonymously(self, bucket: BucketInfo, info: ObjectInfo) -> bool:
        return public_grant(bucket, bucket.acl, "READ") or public_grant(bucket, info.acl, "READ")

    def check_loop(self, bucket: str, key: str, event: str, ident: Identity | None) -> None:
        if ident is not None and ident.function and self.notifications is not None:
            self.notifications.check_loop(bucket, key, event, ident.function)

    async def emit(self, event: str, bucket: str, key: str, info: ObjectInfo | None, ip: str) -> None:
        """Queue the change's trigger deliveries (durably): called after the change, before the answer."""
        if self.notifications is not None:
            if info is None:
                await self.notifications.emit(event, bucket, key, source_ip=ip)
            else:
                await self.notifications.emit(event, bucket, key, info.size, info.etag, info.content_type, ip)

    # -- s3 backend -----------------------------------------------------------------------------------

    async def _proxied(self, req: Request, ident: Identity | None, send: Send) -> None:
        event = _event_for(req)
        if event is not None:
            self.check_loop(req.bucket, req.key, event, ident)
        chunked = (ident is not None and ident.chunked) or "aws-chunked" in req.headers.get("content-encoding", "")
        body: AsyncIterator[bytes] = body_chunks(req.receive)
        if chunked:
            body = aws_chunked(body)
        deleted: list[str] = []
        if req.method == "POST" and not req.key and "delete" in req.q:  # DeleteObjects: know the keys
            raw = await read_all(req.receive)
            deleted = [o.findtext("Key") or "" for o in parse_xml(raw).findall("Object")]
            for key in deleted:
                self.check_loop(req.bucket, key, "deleted", ident)
            body = once(raw)
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
            emits = [self.emit("deleted", req.bucket, key, None, req.client_ip) for key in deleted]
            if event is not None:
                emits.append(self.emit(event, req.bucket, req.key, info, req.client_ip))
            await asyncio.gather(*emits)
        for msg in held:
            await send(msg)


def _policy_context(app: S3App, req: Request) -> dict[str, Callable[[], Any]]:
    """Condition keys of a request, each computed only when a condition asks for it."""
    h, q = req.headers, req.q
    ctx: dict[str, Callable[[], Any]] = {"aws:securetransport": lambda: "false",
                                          "aws:sourceip": lambda: req.client_ip}
    for name in ("x-amz-acl", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                 "x-amz-server-side-encryption-customer-algorithm", "x-amz-copy-source", "x-amz-metadata-directive",
                 "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
                 "x-amz-grant-full-control", "x-amz-content-sha256", "x-amz-storage-class"):
            ctx["s3:" + name] = (lambda n=name: h.get(n))
    for name in ("prefix", "delimiter", "max-keys", "versionid"):
        ctx["s3:" + name] = (lambda n=name: q.get("versionId" if n == "versionid" else n))

    def existing_tags() -> dict[str, str]:
        try:
            return app.backend.head_object(req.bucket, req.key, q.get("versionId")).tags if req.key else {}
        except S3Error:
            return {}

    request_tags: dict[str, str] = {}
    if "x-amz-tagging" in h:
        request_tags = dict(parse_qsl(h["x-amz-tagging"], keep_blank_values=True))
    ctx["s3:requestobjecttagkeys"] = lambda: list(request_tags)

    class Tags(dict):  # s3:ExistingObjectTag/<key>, s3:RequestObjectTag/<key>
        def get(self, k: str, default: Any = None) -> Any:
            if k.startswith("s3:existingobjecttag/"):
                tag = k.split("/", 1)[1]
                return lambda: next((v for t, v in existing_tags().items() if t.lower() == tag), None)
            if k.startswith("s3:requestobjecttag/"):
                tag = k.split("/", 1)[1]
                return lambda: next((v for t, v in request_tags.items() if t.lower() == tag), None)
            return super().get(k, default)

    return Tags(ctx)


def _signed_path(req: Request) -> str:
    """The path a signature covers: SigV4 signs the path as sent; SigV2 and OSS sign `/bucket/key` whatever
    the addressing style."""
    if req.sent_path != req.raw_path and (req.headers.get("authorization", "").startswith("AWS4-")
                                          or "X-Amz-Algorithm" in req.q):
        return req.sent_path
    return req.raw_path


def _event_for(req: Request) -> str | None:
    """Which storage event a successful request produces (s3 backend)."""
    if not req.key:
        return None
    q = req.q
    if req.method == "PUT" and not set(q) & routes.SUBRESOURCES[routes.OBJECT]:
        return "created"
    if req.method == "POST" and "uploadId" in q:
        return "created"
    if req.method == "DELETE" and not set(q) & routes.SUBRESOURCES[routes.OBJECT]:
        return "deleted"
    return None
