"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete (idempotent when repeated after success),
Abort, ListParts."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from polyfn.storage import checksums, conditions
from polyfn.storage.errors import S3Error, invalid_argument
from polyfn.storage.model import ObjectInfo, PutChecks
from polyfn.storage.object_ops import copy_source, version_headers, write_precondition
from polyfn.storage.wire import Request, Send, e, iso, malformed, parse_xml, read_all, respond, respond_xml
from polyfn.storage.write_request import data_key, encryption, new_info, payload, sse_headers

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity


async def create_upload(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.check_loop(req.bucket, req.key, "created", ident)
    await read_all(req.receive)
    bucket = app.backend.bucket(req.bucket)
    info = new_info(app, req, bucket)
    enc = encryption(app, req.headers, bucket)
    algo = checksums.declared(req.headers)
    ctype = req.headers.get("x-amz-checksum-type", "").upper()
    if ctype and ctype not in ("COMPOSITE", "FULL_OBJECT"):
        raise invalid_argument("Value for x-amz-checksum-type header is invalid.")
    if ctype == "FULL_OBJECT" and algo not in checksums.CRCS:
        raise invalid_argument(f"The {algo.upper() or 'given'} algorithm cannot make a FULL_OBJECT checksum")
    if ctype == "COMPOSITE" and algo == "crc64nvme":
        raise invalid_argument("The CRC64NVME algorithm only makes FULL_OBJECT checksums")
    upload_id = app.backend.create_upload(req.bucket, req.key, info, enc[1] if enc else None, algo, ctype)
    hdrs = sse_headers(info, req.headers) if enc else []
    if enc:
        info.sse = enc[1]
        hdrs = sse_headers(info, req.headers)
    if algo:
        hdrs += [(b"x-amz-checksum-algorithm", algo.upper().encode()),
                 (b"x-amz-checksum-type", (ctype or ("FULL_OBJECT" if algo in checksums.CRCS else "COMPOSITE"))
                  .encode())]
    await respond_xml(send, "InitiateMultipartUploadResult", f"<Bucket>{e(req.bucket)}</Bucket>"
                      f"<Key>{e(req.key)}</Key><UploadId>{upload_id}</UploadId>", headers=hdrs)


def _part_number(req: Request) -> int:
    try:
        n = int(req.q.get("partNumber", ""))
    except ValueError:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive") from None
    if not 1 <= n <= 10000:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
    return n


def _upload_key(app: S3Context, req: Request) -> bytes | None:
    """The data key of an encrypted upload (SSE-C: the part request must carry the same customer key)."""
    rec = app.backend.upload(req.bucket, req.key, req.q["uploadId"])
    if not rec["sse"]:
        return None
    return data_key(app, req.headers, ObjectInfo(req.key, 0, "", 0.0, sse=rec["sse"]))


def _upload_sse_headers(app: S3Context, req: Request) -> list[tuple[bytes, bytes]]:
    rec = app.backend.upload(req.bucket, req.key, req.q["uploadId"])
    return sse_headers(ObjectInfo(req.key, 0, "", 0.0, sse=rec["sse"]), req.headers) if rec["sse"] else []


async def upload_part(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    number = _part_number(req)
    dk = _upload_key(app, req)
    chunks, checks = payload(app, req, ident)
    part = await app.backend.put_part(req.bucket, req.key, req.q["uploadId"], number, chunks, checks, dk)
    hdrs = [(b"etag", f'"{part.etag}"'.encode()), *checksums.response_headers(part.checksums),
            *_upload_sse_headers(app, req)]
    hdrs = [h for h in hdrs if h[0] != b"x-amz-checksum-type"]
    await respond(send, 200, hdrs)


async def upload_part_copy(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    number = _part_number(req)
    sb, sk, svid = copy_source(req)
    await read_all(req.receive)
    dk = _upload_key(app, req)
    h = req.headers
    src, fd = app.backend.open_object(sb, sk, svid)
    try:
        conditions.check_read(h, src.etag, src.last_modified, "x-amz-copy-source-if-")
        start, end = 0, src.size
        rng = h.get("x-amz-copy-source-range")
        if rng is not None:
            unit, _, spec = rng.partition("=")
            first, _, last = spec.partition("-")
            try:
                start, end = int(first), int(last) + 1
            except ValueError:
                raise invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last "
                                       "where first and last are the zero-based offsets of the first and last "
                                       "bytes to copy") from None
            if unit != "bytes" or start < 0 or end <= start or end > src.size:
                raise S3Error(400, "InvalidRange", "The x-amz-copy-source-range is not valid for a source object "
                              f"of size {src.size}")
        src_key = data_key(app, h, src, "x-amz-copy-source-server-side-encryption-customer-")
        stream, fd = app.backend.stream(fd, src, start, end, src_key), -1
        part = await app.backend.put_part(req.bucket, req.key, req.q["uploadId"], number, stream,
                                          PutChecks(length=end - start), dk)
    finally:
        if fd >= 0:
            os.close(fd)
    hdrs = []
    if svid or src.version_id != "null":
        hdrs.append((b"x-amz-copy-source-version-id", src.version_id.encode()))
    sums = "".join(f"<Checksum{a.upper()}>{v}</Checksum{a.upper()}>" for a, v in part.checksums.items())
    hdrs += _upload_sse_headers(app, req)
    await respond_xml(send, "CopyPartResult", f"<LastModified>{iso(part.last_modified)}</LastModified>"
                      f"<ETag>&quot;{part.etag}&quot;</ETag>{sums}", headers=hdrs)


async def complete_upload(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.check_loop(req.bucket, req.key, "created", ident)
    root = parse_xml(await read_all(req.receive))
    if root.tag != "CompleteMultipartUpload":
        raise malformed()
    parts = []
    for p in root.findall("Part"):
        try:
            n = int(p.findtext("PartNumber") or "")
        except ValueError:
            raise malformed("PartNumber must be an integer") from None
        given = {a: v for a in checksums.ALGORITHMS if (v := p.findtext(f"Checksum{a.upper()}"))}
        parts.append((n, p.findtext("ETag") or "", given))
    whole = checksums.from_headers(req.headers)
    bucket = app.backend.bucket(req.bucket)
    try:
        sse_c = app.backend.upload(req.bucket, req.key, req.q["uploadId"])["sse"].get("kind") == "c"
    except S3Error:
        sse_c = False  # (no such upload, or one completed already: the backend answers that)
    if sse_c:
        _upload_key(app, req)  # an SSE-C upload completes with its customer key, as every part was sent (400)
    info = await app.backend.complete_upload(req.bucket, req.key, req.q["uploadId"], parts, whole,
                                             write_precondition(req))
    await app.emit("created", req.bucket, req.key, info, req.client_ip)
    sums = "".join(f"<Checksum{a.upper()}>{v}</Checksum{a.upper()}>" for a, v in info.checksums.items())
    if info.checksum_type:
        sums += f"<ChecksumType>{info.checksum_type}</ChecksumType>"
    hdrs = [*version_headers(info, bucket.versioning == "Enabled"), *sse_headers(info, req.headers)]
    await respond_xml(send, "CompleteMultipartUploadResult",
                      f"<Location>/{e(req.bucket)}/{e(req.key)}</Location><Bucket>{e(req.bucket)}</Bucket>"
                      f"<Key>{e(req.key)}</Key><ETag>&quot;{info.etag}&quot;</ETag>{sums}", headers=hdrs)


async def abort_upload(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.abort_upload(req.bucket, req.key, req.q["uploadId"])
    await respond(send, 204, [])


async def list_parts(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    try:
        marker = int(req.q.get("part-number-marker", "0") or 0)
        max_parts = min(int(req.q.get("max-parts", "1000")), 1000)
    except ValueError:
        raise invalid_argument("part-number-marker and max-parts must be integers") from None
    rec = app.backend.upload(req.bucket, req.key, req.q["uploadId"])
    parts = [p for p in app.backend.list_parts(req.bucket, req.key, req.q["uploadId"]) if int(p.key) > marker]
    truncated = len(parts) > max_parts
    parts = parts[:max_parts]
    items = "".join(f"<Part><PartNumber>{p.key}</PartNumber><LastModified>{iso(p.last_modified)}</LastModified>"
                    f"<ETag>&quot;{p.etag}&quot;</ETag><Size>{p.size}</Size>"
                    + "".join(f"<Checksum{a.upper()}>{v}</Checksum{a.upper()}>" for a, v in p.checksums.items())
                    + "</Part>" for p in parts)
    algo = f"<ChecksumAlgorithm>{rec['algo'].upper()}</ChecksumAlgorithm>" if rec["algo"] else ""
    await respond_xml(send, "ListPartsResult",
                      f"<Bucket>{e(req.bucket)}</Bucket><Key>{e(req.key)}</Key><UploadId>{e(req.q['uploadId'])}"
                      f"</UploadId><PartNumberMarker>{marker}</PartNumberMarker><NextPartNumberMarker>"
                      f"{parts[-1].key if parts else 0}</NextPartNumberMarker><MaxParts>{max_parts}</MaxParts>"
                      f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{algo}"
                      f"<StorageClass>STANDARD</StorageClass>{items}")

