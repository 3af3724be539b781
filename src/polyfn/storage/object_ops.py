"""Object operations: PutObject, GetObject/HeadObject, CopyObject, DeleteObject, DeleteObjects.

Each handler is `(app, req, send, ident)`; `routes.py` decides which one a request reaches. Writes emit
their storage events before answering (`app.emit`).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from polyfn.storage import checksums, conditions, sse
from polyfn.storage.errors import S3Error, access_denied, invalid_argument
from polyfn.storage.model import NULL_VERSION, ObjectInfo, PutChecks, validate_bucket_name, validate_key
from polyfn.storage.wire import (
    XML_CT,
    Request,
    Send,
    e,
    http_date,
    iso,
    malformed,
    parse_range,
    parse_xml,
    read_all,
    respond_xml,
    xml,
)
from polyfn.storage.wire import respond as _respond
from polyfn.storage.write_request import (
    data_key,
    encryption,
    header_safe,
    new_info,
    payload,
    sse_headers,
    tags_from_header,
)

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity

MAX_DELETE_KEYS = 1000
RESPONSE_OVERRIDES = {"response-content-type": "content-type", "response-content-language": "content-language",
                      "response-expires": "expires", "response-cache-control": "cache-control",
                      "response-content-disposition": "content-disposition",
                      "response-content-encoding": "content-encoding"}


def version_headers(info: ObjectInfo, versioned: bool) -> list[tuple[bytes, bytes]]:
    if versioned or info.version_id != NULL_VERSION:
        return [(b"x-amz-version-id", info.version_id.encode())]
    return []


def write_precondition(req: Request) -> Any:
    h = req.headers
    if "if-none-match" not in h and "if-match" not in h:
        return None
    return lambda current: conditions.check_write(h, current, req.bucket, req.key)


async def put_object(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.check_loop(req.bucket, req.key, "created", ident)
    bucket = app.backend.bucket(req.bucket)
    info = new_info(app, req, bucket)
    enc = encryption(app, req.headers, bucket)
    chunks, checks = payload(app, req, ident)
    info = await app.backend.put_object(req.bucket, req.key, chunks, info, checks, enc, write_precondition(req))
    hdrs = [(b"etag", f'"{info.etag}"'.encode()), *version_headers(info, bucket.versioning == "Enabled"),
            *sse_headers(info, req.headers), *checksums.response_headers(info.checksums)]
    await app.emit("created", req.bucket, req.key, info, req.client_ip)
    await _respond(send, 200, hdrs)


def _version_param(req: Request) -> str | None:
    vid = req.q.get("versionId")
    if vid == "":
        raise invalid_argument("Version id cannot be the empty string")
    return vid


async def get_object(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    head = req.method == "HEAD"
    bucket = app.backend.bucket(req.bucket)
    info, fd = app.backend.open_object(req.bucket, req.key, _version_param(req))
    try:
        if ident is None and not req.policy_allows and not app.may_read_anonymously(bucket, info):
            raise access_denied()
        h = req.headers
        etag = f'"{info.etag}"'
        if conditions.check_read(h, info.etag, info.last_modified) == conditions.NOT_MODIFIED:
            return await _respond(send, 304, [(b"etag", etag.encode()),
                                              (b"last-modified", http_date(info.last_modified).encode())], head=True)
        if sse.H_SSE in h or "x-amz-server-side-encryption-aws-kms-key-id" in h:
            raise invalid_argument("x-amz-server-side-encryption headers are only for writes (PUT, POST, copy)")
        size = info.size
        start, end, status = 0, size, 200
        part_hdrs: list[tuple[bytes, bytes]] = []
        ck_mode = h.get("x-amz-checksum-mode", "").upper() == "ENABLED"
        sums = checksums.response_headers(info.checksums, info.checksum_type) if ck_mode else []
        if "partNumber" in req.q:  # (a part the object does not have is InvalidPart, with or without its key)
            start, end, status, part_hdrs, sums = _part_range(req.q["partNumber"], info, ck_mode)
        dk = data_key(app, h, info)
        rng = h.get("range")
        if rng and "partNumber" in req.q:
            raise invalid_argument("Cannot specify both Range header and partNumber query parameter")
        if rng:
            start, end, status = parse_range(rng, size)
            if status == 206 and (start, end) != (0, size):
                sums = []
        hdrs = [(b"content-type", info.content_type.encode("latin-1", "replace")),
                (b"content-length", str(end - start).encode()),
                (b"etag", etag.encode()),
                (b"last-modified", http_date(info.last_modified).encode()),
                (b"accept-ranges", b"bytes"),
                *version_headers(info, bucket.versioning == "Enabled"), *part_hdrs, *sums, *sse_headers(info, h),
                *object_headers(info)]
        if status == 206:
            hdrs.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
        hdrs = _overridden(hdrs, req, ident)
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        if head or end == start:
            await send({"type": "http.response.body", "body": b""})
            return
        if end - start <= 256 * 1024 and not info.sse:  # small: one read, one send
            body = os.pread(fd, end - start, start)
            await send({"type": "http.response.body", "body": body})
            return
        stream, fd = app.backend.stream(fd, info, start, end, dk), -1
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        if fd >= 0:
            os.close(fd)


def _overridden(hdrs: list[tuple[bytes, bytes]], req: Request, ident: Identity | None) -> list[tuple[bytes, bytes]]:
    """`hdrs` with the headers a signed GET asks for instead (`?response-content-type=…`)."""
    for qk, hk in RESPONSE_OVERRIDES.items():
        if qk in req.q:
            if ident is None:
                raise invalid_argument("Request specific response headers cannot be used for anonymous GET "
                                       "requests.")
            if not header_safe(req.q[qk]):  # (it would go out as a header: refused, not a dropped answer)
                raise invalid_argument(f"{qk} may not contain control characters")
            hdrs = [x for x in hdrs if x[0] != hk.encode()] + [(hk.encode(), req.q[qk].encode("latin-1", "replace"))]
    return hdrs


def object_headers(info: ObjectInfo) -> list[tuple[bytes, bytes]]:
    """What GET/HEAD say about a version beside its bytes: headers it was stored with, metadata, tags count,
    storage class, Object Lock."""
    hdrs = [(k.encode(), _header_bytes(v)) for k, v in info.headers.items()]
    hdrs += [(b"x-amz-meta-" + k.encode(), _header_bytes(v)) for k, v in info.metadata.items()]
    if info.tags:
        hdrs.append((b"x-amz-tagging-count", str(len(info.tags)).encode()))
    if info.storage_class != "STANDARD":
        hdrs.append((b"x-amz-storage-class", info.storage_class.encode()))
    if info.lock_mode:
        hdrs += [(b"x-amz-object-lock-mode", info.lock_mode.encode()),
                 (b"x-amz-object-lock-retain-until-date", iso(info.lock_until).encode())]
    if info.legal_hold:
        hdrs.append((b"x-amz-object-lock-legal-hold", b"ON"))
    return hdrs


def _header_bytes(value: str) -> bytes:
    """Clients read header values as Latin-1 (http.client): what fits goes out so, anything else as UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def _part_range(value: str, info: ObjectInfo, ck_mode: bool,
                ) -> tuple[int, int, int, list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """`?partNumber=N`: the part's bytes of a multipart object (206), or the whole of any other for N=1."""
    try:
        n = int(value)
    except ValueError:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive") from None
    if not 1 <= n <= 10000:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
    parts = info.parts or [info.size]
    if n > len(parts):
        raise S3Error(400, "InvalidPart", "The requested partnumber is not satisfiable",
                      PartNumberRequested=str(n), ActualPartCount=str(len(parts)))
    start = sum(parts[:n - 1])
    sums: list[tuple[bytes, bytes]] = []
    if ck_mode and info.part_checksums and info.checksums:
        algo = next(iter(info.checksums))
        sums = checksums.response_headers({algo: info.part_checksums[n - 1]}, info.checksum_type)
    elif ck_mode:
        sums = checksums.response_headers(info.checksums, info.checksum_type)
    if not info.parts:
        return 0, info.size, 200, [], sums
    return start, start + parts[n - 1], 206, [(b"x-amz-mp-parts-count", str(len(parts)).encode())], sums


def copy_source(req: Request) -> tuple[str, str, str | None]:
    """(bucket, key, version id) of `x-amz-copy-source`."""
    raw = req.headers["x-amz-copy-source"]
    path, _, qs = raw.partition("?")
    src = unquote(path).lstrip("/")
    sb, _, sk = src.partition("/")
    if not sb or not sk:
        raise invalid_argument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
    validate_bucket_name(sb)
    validate_key(sk)
    vid = None
    if qs:
        name, _, value = qs.partition("=")
        if name != "versionId":
            raise invalid_argument("Unknown parameter in x-amz-copy-source (only versionId)")
        vid = unquote(value)
    return sb, sk, vid


async def copy_object(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    sb, sk, svid = copy_source(req)
    app.check_loop(req.bucket, req.key, "created", ident)
    await read_all(req.receive)
    h = req.headers
    directive = h.get("x-amz-metadata-directive", "COPY").upper()
    tag_directive = h.get("x-amz-tagging-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE") or tag_directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.")
    bucket = app.backend.bucket(req.bucket)
    src_info, fd = app.backend.open_object(sb, sk, svid)
    try:
        conditions.check_read(h, src_info.etag, src_info.last_modified, "x-amz-copy-source-if-")
        changes = (directive == "REPLACE" or any(k.startswith("x-amz-server-side-encryption") for k in h)
                   or "x-amz-storage-class" in h or bucket.encryption)
        if (sb, sk) == (req.bucket, req.key) and svid in (None, src_info.version_id) and not changes:
            raise S3Error(400, "InvalidRequest", "This copy request is illegal because it is trying to copy an "
                          "object to itself without changing the object's metadata, storage class, website "
                          "redirect location or encryption attributes.")
        src_key = data_key(app, h, src_info, "x-amz-copy-source-server-side-encryption-customer-")
        info = new_info(app, req, bucket)
        if directive == "COPY":
            info.content_type, info.metadata = src_info.content_type, dict(src_info.metadata)
            info.headers = dict(src_info.headers)
        info.tags = (tags_from_header(h.get("x-amz-tagging", "")) if tag_directive == "REPLACE"
                     else dict(src_info.tags))
        if src_info.checksums and not src_info.part_checksums:
            info.checksums = dict(src_info.checksums)
        enc = encryption(app, h, bucket)
        stream, fd = app.backend.stream(fd, src_info, 0, src_info.size, src_key), -1
        new = await app.backend.put_object(req.bucket, req.key, stream, info, PutChecks(), enc,
                                           write_precondition(req))
    finally:
        if fd >= 0:
            os.close(fd)
    await app.emit("created", req.bucket, req.key, new, req.client_ip)
    hdrs = [*version_headers(new, bucket.versioning == "Enabled"), *sse_headers(new, h)]
    if src_info.version_id != NULL_VERSION or svid:
        hdrs.append((b"x-amz-copy-source-version-id", src_info.version_id.encode()))
    await _respond(send, 200, [*XML_CT, *hdrs], _copy_result(new))


def _copy_result(info: ObjectInfo) -> bytes:
    sums = "".join(f"<Checksum{a.upper()}>{v}</Checksum{a.upper()}>" for a, v in info.checksums.items())
    return xml("CopyObjectResult", f"<LastModified>{iso(info.last_modified)}</LastModified>"
               f"<ETag>&quot;{info.etag}&quot;</ETag>{sums}")


def _bypass(req: Request) -> bool:
    return req.headers.get("x-amz-bypass-governance-retention", "").lower() == "true"


async def delete_object(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.check_loop(req.bucket, req.key, "deleted", ident)
    vid = _version_param(req)
    if "if-match" in req.headers:
        try:
            current = app.backend.head_object(req.bucket, req.key)
        except S3Error:
            current = None
        conditions.check_write({"if-match": req.headers["if-match"]}, current, req.bucket, req.key)
    d = await app.backend.delete_object(req.bucket, req.key, vid, _bypass(req))
    if d.existed:
        await app.emit("deleted", req.bucket, req.key, None, req.client_ip)
    hdrs = []
    if d.version_id:
        hdrs.append((b"x-amz-version-id", d.version_id.encode()))
    if d.delete_marker:
        hdrs.append((b"x-amz-delete-marker", b"true"))
    await _respond(send, 204, hdrs)


async def delete_objects(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await read_all(req.receive))
    if root.tag != "Delete":
        raise malformed()
    quiet = (root.findtext("Quiet") or "").lower() == "true"
    objects = root.findall("Object")
    if len(objects) > MAX_DELETE_KEYS or not objects:
        raise malformed(f"DeleteObjects takes 1 to {MAX_DELETE_KEYS} keys")
    app.backend.bucket(req.bucket)
    out, gone = [], []
    for obj in objects:
        key, vid = obj.findtext("Key") or "", obj.findtext("VersionId")
        try:
            validate_key(key)
            app.check_loop(req.bucket, key, "deleted", ident)
            d = await app.backend.delete_object(req.bucket, key, vid, _bypass(req))
        except S3Error as err:
            v = f"<VersionId>{e(vid)}</VersionId>" if vid else ""
            out.append(f"<Error><Key>{e(key)}</Key>{v}<Code>{err.code}</Code><Message>{e(err.message)}</Message>"
                       "</Error>")
            continue
        if d.existed:
            gone.append(key)
        if not quiet:
            parts = [f"<Key>{e(key)}</Key>"]
            if vid:
                parts.append(f"<VersionId>{e(vid)}</VersionId>")
            if d.delete_marker:
                parts.append("<DeleteMarker>true</DeleteMarker>")
                if not vid:
                    parts.append(f"<DeleteMarkerVersionId>{e(d.version_id)}</DeleteMarkerVersionId>")
            out.append(f"<Deleted>{''.join(parts)}</Deleted>")
    await asyncio.gather(*(app.emit("deleted", req.bucket, k, None, req.client_ip) for k in gone))
    await respond_xml(send, "DeleteResult", "".join(out))
