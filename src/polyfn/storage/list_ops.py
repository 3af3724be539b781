"""Listings: ListObjects (v1 and v2), ListObjectVersions (also on unversioned buckets, where every object
is its null version) and ListMultipartUploads."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from polyfn.storage.errors import invalid_argument
from polyfn.storage.model import ObjectInfo
from polyfn.storage.wire import OSS_DIALECT, OWNER, Request, Send, e, iso, respond_xml

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity


def _max(q: dict[str, str], name: str, default: int = 1000) -> int:
    try:
        n = int(q.get(name, str(default)))
    except ValueError:
        raise invalid_argument(f"{name} must be an integer") from None
    if n < 0:
        raise invalid_argument(f"{name} must be >= 0")
    return min(n, 1000)


def _encoder(q: dict[str, str]) -> Callable[[str], str]:
    if "encoding-type" in q and q["encoding-type"] != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request")
    return (lambda s: quote(s, safe="/")) if q.get("encoding-type") == "url" else (lambda s: s)


def _storage_class(o: ObjectInfo) -> str:
    return f"<StorageClass>{o.storage_class}</StorageClass>"


async def list_objects(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    q = req.q
    v2 = q.get("list-type") == "2"
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    url = q.get("encoding-type") == "url"
    enc = _encoder(q)
    max_keys = _max(q, "max-keys")
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
    if max_keys == 0:
        contents, prefixes, truncated, last = [], [], False, ""
        app.backend.bucket(req.bucket)
    else:
        contents, prefixes, truncated, last = await asyncio.to_thread(
            app.backend.list_objects, req.bucket, prefix, delimiter, after, max_keys)
    parts = [f"<Name>{e(req.bucket)}</Name><Prefix>{e(enc(prefix) if v2 else prefix)}</Prefix>"]
    if v2:
        parts.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
    else:
        parts.append(f"<Marker>{e(enc(after))}</Marker>")
    parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
    if delimiter:
        parts.append(f"<Delimiter>{e(enc(delimiter))}</Delimiter>")
    parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    if v2:
        if token is not None:
            parts.append(f"<ContinuationToken>{e(token)}</ContinuationToken>")
        if "start-after" in q:
            parts.append(f"<StartAfter>{e(enc(q['start-after']))}</StartAfter>")
        if truncated:
            nxt = base64.urlsafe_b64encode(last.encode()).decode()
            parts.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
    elif truncated:
        parts.append(f"<NextMarker>{e(enc(last))}</NextMarker>")
    owner = OWNER if (not v2 or q.get("fetch-owner") == "true") else ""
    if OSS_DIALECT.get():
        owner += "<Type>Normal</Type>"
    for o in contents:
        parts.append(f"<Contents><Key>{e(enc(o.key))}</Key><LastModified>{iso(o.last_modified)}</LastModified>"
                     f"<ETag>&quot;{o.etag}&quot;</ETag><Size>{o.size}</Size>{owner}{_storage_class(o)}</Contents>")
    for p in prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{e(enc(p))}</Prefix></CommonPrefixes>")
    await respond_xml(send, "ListBucketResult", "".join(parts))


def _versions_page(app: S3Context, bucket: str, prefix: str, delimiter: str, key_marker: str, vid_marker: str,
                   max_keys: int) -> tuple[list[tuple[ObjectInfo, bool]], list[str], bool, str, str]:
    """(versions with is-latest, common prefixes, truncated, next key marker, next version marker)."""
    out: list[tuple[ObjectInfo, bool]] = []
    prefixes: list[str] = []
    last_key, last_vid = "", ""
    pending: list[tuple[str, bool]] = []
    if vid_marker and key_marker.startswith(prefix):  # the marker key's versions after the marker come first
        pending.append((key_marker, False))
    keys, cps, _, _ = app.backend.list_objects(bucket, prefix, delimiter, key_marker, max_keys + 1, versions=True)
    pending += sorted([(k, False) for k in keys] + [(p, True) for p in cps])
    for name, is_prefix in pending:
        if is_prefix:
            if len(out) + len(prefixes) >= max_keys:
                return out, prefixes, True, last_key, last_vid
            prefixes.append(name)
            last_key, last_vid = name, ""
            continue
        started = not (vid_marker and name == key_marker)
        for i, (info, _path) in enumerate(app.backend.versions(bucket, name)):
            if not started:
                started = info.version_id == vid_marker
                continue
            if len(out) + len(prefixes) >= max_keys:
                return out, prefixes, True, last_key, last_vid
            out.append((info, i == 0))
            last_key, last_vid = name, info.version_id
    return out, prefixes, False, last_key, last_vid


async def list_versions(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    q = req.q
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, vid_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    if vid_marker and not key_marker:
        raise invalid_argument("A version-id marker cannot be specified without a key marker.")
    enc = _encoder(q)
    max_keys = _max(q, "max-keys")
    app.backend.bucket(req.bucket)
    versions, prefixes, truncated, nk, nv = await asyncio.to_thread(
        _versions_page, app, req.bucket, prefix, delimiter, key_marker, vid_marker, max_keys)
    parts = [f"<Name>{e(req.bucket)}</Name><Prefix>{e(enc(prefix))}</Prefix><KeyMarker>{e(enc(key_marker))}"
             f"</KeyMarker><VersionIdMarker>{e(vid_marker)}</VersionIdMarker><MaxKeys>{max_keys}</MaxKeys>"]
    if delimiter:
        parts.append(f"<Delimiter>{e(enc(delimiter))}</Delimiter>")
    parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if truncated:
        parts.append(f"<NextKeyMarker>{e(enc(nk))}</NextKeyMarker><NextVersionIdMarker>{e(nv)}</NextVersionIdMarker>")
    if "encoding-type" in q:
        parts.append("<EncodingType>url</EncodingType>")
    for info, latest in versions:
        common = (f"<Key>{e(enc(info.key))}</Key><VersionId>{info.version_id}</VersionId><IsLatest>"
                  f"{'true' if latest else 'false'}</IsLatest><LastModified>{iso(info.last_modified)}</LastModified>")
        if info.delete_marker:
            parts.append(f"<DeleteMarker>{common}{OWNER}</DeleteMarker>")
        else:
            parts.append(f"<Version>{common}<ETag>&quot;{info.etag}&quot;</ETag><Size>{info.size}</Size>"
                         f"{_storage_class(info)}{OWNER}</Version>")
    for p in prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{e(enc(p))}</Prefix></CommonPrefixes>")
    await respond_xml(send, "ListVersionsResult", "".join(parts))


async def list_uploads(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    q = req.q
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    max_uploads = _max(q, "max-uploads")
    enc = _encoder(q)
    items, prefixes, truncated = [], [], False
    nk = nu = ""
    for u in app.backend.list_uploads(req.bucket):
        k = u["key"]
        if not k.startswith(prefix) or (k, u["upload_id"]) <= (key_marker, id_marker or ("" if not key_marker
                                                                                           else "\U0010ffff")):
            continue
        if delimiter:
            i = k.find(delimiter, len(prefix))
            if i >= 0:
                cp = k[:i + len(delimiter)]
                if cp not in prefixes:
                    if len(items) + len(prefixes) >= max_uploads:
                        truncated = True
                        break
                    prefixes.append(cp)
                continue
        if len(items) + len(prefixes) >= max_uploads:
            truncated = True
            break
        items.append(f"<Upload><Key>{e(enc(k))}</Key><UploadId>{u['upload_id']}</UploadId>{OWNER}"
                     f"<Initiator><ID>polyfn</ID><DisplayName>polyfn</DisplayName></Initiator>"
                     f"<Initiated>{iso(u['created'])}</Initiated><StorageClass>STANDARD</StorageClass></Upload>")
        nk, nu = k, u["upload_id"]
    if max_uploads == 0:
        items, truncated = [], False
    cps = "".join(f"<CommonPrefixes><Prefix>{e(enc(p))}</Prefix></CommonPrefixes>" for p in prefixes)
    await respond_xml(send, "ListMultipartUploadsResult",
                      f"<Bucket>{e(req.bucket)}</Bucket><KeyMarker>{e(key_marker)}</KeyMarker><UploadIdMarker>"
                      f"{e(id_marker)}</UploadIdMarker><NextKeyMarker>{e(nk)}</NextKeyMarker><NextUploadIdMarker>"
                      f"{nu}</NextUploadIdMarker><Prefix>{e(prefix)}</Prefix>"
                      + (f"<Delimiter>{e(delimiter)}</Delimiter>" if delimiter else "")
                      + f"<MaxUploads>{max_uploads}</MaxUploads><IsTruncated>{'true' if truncated else 'false'}"
                      f"</IsTruncated>{''.join(items)}{cps}")

