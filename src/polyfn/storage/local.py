"""The `local` backend: buckets and objects in a directory (default `<data dir>/storage`).

Layout::

    buckets/<bucket>/.bucket              bucket record (JSON: created, public)
    buckets/<bucket>/_<seg>/_<seg>.o      one object per file; key segments are escaped (below)
    uploads/<upload id>/upload.json       a multipart upload in progress; parts are `<n>` files
    tmp/                                  files being written; emptied at start

Keys never become paths as given: every `/`-separated segment is escaped byte-wise (everything except
ASCII letters, digits, `-` and `_` becomes `%XX`, so no name is ever `.` or `..` and nothing contains a
separator) and prefixed with `_`; objects end in `.o`, so the object `a` and the prefix `a/` live side by
side. An object file holds the data followed by a JSON trailer with the metadata, its length and a magic
tag: one file, written to `tmp/` and renamed into place, so a reader sees the old object or the new one,
never a mix, and a killed server leaves nothing half-written in `buckets/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from polyfn.storage.errors import S3Error, insufficient_storage, invalid_argument, no_such_bucket, no_such_key

MAGIC = b"PFO1"
_TRAILER = struct.Struct("!I4s")
READ_CHUNK = 256 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10000
MAX_KEY_BYTES = 1024
_SEG_MAX = 240  # bytes of one escaped segment (file names are limited to 255)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_ENC = [chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256)]


@dataclass(slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # hex MD5 (or `<md5>-<parts>` for multipart), without quotes
    last_modified: float
    content_type: str = "binary/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* without the prefix
    headers: dict[str, str] = field(default_factory=dict)  # cache-control, content-disposition, …
    checksums: dict[str, str] = field(default_factory=dict)  # e.g. {"crc32": base64}

    def to_meta(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag, "mtime": self.last_modified,
                "ct": self.content_type, "meta": self.metadata, "h": self.headers, "ck": self.checksums}

    @classmethod
    def from_meta(cls, m: dict[str, Any]) -> ObjectInfo:
        return cls(m["key"], m["size"], m["etag"], m["mtime"], m["ct"], m["meta"], m["h"], m.get("ck", {}))


@dataclass(slots=True)
class BucketInfo:
    name: str
    created: float
    public: bool = False


@dataclass(slots=True)
class PutChecks:
    """What the written bytes must match (each optional)."""

    md5_b64: str | None = None  # Content-MD5
    sha256_hex: str | None = None  # x-amz-content-sha256 when the payload is signed
    crc32_b64: str | None = None  # x-amz-checksum-crc32
    length: int | None = None  # Content-Length / x-amz-decoded-content-length


def validate_bucket_name(name: str) -> None:
    if not _BUCKET_RE.match(name) or ".." in name or re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        raise S3Error(400, "InvalidBucketName", "The specified bucket is not valid.", f"/{name}", BucketName=name)


def validate_key(key: str) -> None:
    if not key:
        raise invalid_argument("the object key is empty")
    if "\x00" in key:
        raise invalid_argument("object keys may not contain NUL characters")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error(400, "KeyTooLongError", "Your key is too long")


def _enc(seg: str) -> str:
    try:
        raw = seg.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_argument("object keys must be valid UTF-8") from None
    out = "_" + "".join([_ENC[b] for b in raw])
    if len(out) > _SEG_MAX:
        raise S3Error(400, "KeyTooLongError", "one /-separated segment of the key is too long for the local "
                      "backend (at most about 80 bytes of non-alphanumeric characters or 239 of alphanumerics)")
    return out


def _dec(name: str) -> str:
    from urllib.parse import unquote

    return unquote(name[1:], errors="strict")


def _http_date(ts: float) -> str:
    import email.utils

    return email.utils.formatdate(ts, usegmt=True)


class Writer:
    """Streams bytes into a temp file, hashing as it goes; `commit` renames it into place."""

    def __init__(self, tmp_dir: Path, max_size: int, fsync: bool) -> None:
        self.path = tmp_dir / uuid.uuid4().hex
        self.max_size = max_size
        self.fsync = fsync
        self.md5 = hashlib.md5()
        self.sha256: Any = None
        self.crc: int | None = None
        self.size = 0
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def want(self, checks: PutChecks) -> None:
        if checks.sha256_hex:
            self.sha256 = hashlib.sha256()
        if checks.crc32_b64:
            self.crc = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_size:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                          MaxSizeAllowed=str(self.max_size))
        self.md5.update(chunk)
        if self.sha256 is not None:
            self.sha256.update(chunk)
        if self.crc is not None:
            self.crc = zlib.crc32(chunk, self.crc)
        view = memoryview(chunk)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as e:
            raise _io_error(e) from e

    def verify(self, checks: PutChecks) -> None:
        import base64

        if checks.length is not None and self.size != checks.length:
            raise S3Error(400, "IncompleteBody", "You did not provide the number of bytes specified by the "
                          "Content-Length HTTP header")
        if checks.md5_b64 is not None:
            try:
                want = base64.b64decode(checks.md5_b64, validate=True)
            except ValueError:
                raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.") from None
            if want != self.md5.digest():
                raise S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        if checks.sha256_hex and self.sha256 is not None and self.sha256.hexdigest() != checks.sha256_hex:
            raise S3Error(400, "XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what was computed.")
        if checks.crc32_b64 is not None and self.crc is not None:
            got = base64.b64encode((self.crc & 0xFFFFFFFF).to_bytes(4, "big")).decode()
            if got != checks.crc32_b64:
                raise S3Error(400, "BadDigest", "The CRC32 you specified did not match the calculated checksum.")

    def finish(self, info: ObjectInfo) -> None:
        meta = msgspec.json.encode(info.to_meta())
        try:
            os.write(self.fd, meta + _TRAILER.pack(len(meta), MAGIC))
            if self.fsync:
                os.fsync(self.fd)
        except OSError as e:
            raise _io_error(e) from e
        finally:
            os.close(self.fd)
            self.fd = -1

    def commit(self, dest: Path) -> None:
        for _ in range(5):  # a concurrent delete may remove the parent directory between mkdir and rename
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(self.path, dest)
                return
            except FileNotFoundError:
                continue
        raise S3Error(500, "InternalError", "could not store the object (its directory kept disappearing)")

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _io_error(e: OSError) -> S3Error:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return insufficient_storage()
    return S3Error(500, "InternalError", f"storage I/O error: {e.strerror}")


def read_info(path: Path | str) -> tuple[ObjectInfo, int]:
    """The object's metadata and the byte length of its data; raises FileNotFoundError."""
    with open(path, "rb") as f:
        return _read_info_fd(f.fileno())


def _read_info_fd(fd: int) -> tuple[ObjectInfo, int]:
    end = os.fstat(fd).st_size
    n, magic = _TRAILER.unpack(os.pread(fd, _TRAILER.size, end - _TRAILER.size))
    if magic != MAGIC:
        raise S3Error(500, "InternalError", "corrupt object file")
    meta = msgspec.json.decode(os.pread(fd, n, end - _TRAILER.size - n))
    return ObjectInfo.from_meta(meta), end - _TRAILER.size - n


class LocalBackend:
    name = "local"

    def __init__(self, root: Path, max_object_size: int, fsync: bool = False) -> None:
        self.root = root
        self.buckets = root / "buckets"
        self.uploads = root / "uploads"
        self.tmp = root / "tmp"
        self.max_object_size = max_object_size
        self.fsync = fsync
        self._root_str = str(self.buckets)
        self._known: dict[str, BucketInfo] = {}  # bucket records read or written by this process

    def open(self) -> None:
        for d in (self.buckets, self.uploads, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        for f in self.tmp.iterdir():  # left by a killed server: never visible, now gone
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    f.unlink()

    # -- buckets --------------------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        validate_bucket_name(bucket)
        return self.buckets / bucket

    def bucket(self, bucket: str) -> BucketInfo:
        info = self._known.get(bucket)
        if info is not None:
            return info
        try:
            rec = json.loads((self._bucket_dir(bucket) / ".bucket").read_bytes())
        except FileNotFoundError:
            raise no_such_bucket(bucket) from None
        info = self._known[bucket] = BucketInfo(bucket, rec["created"], rec.get("public", False))
        return info

    def list_buckets(self) -> list[BucketInfo]:
        out = []
        for d in sorted(self.buckets.iterdir()):
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                rec = json.loads((d / ".bucket").read_bytes())
                out.append(BucketInfo(d.name, rec["created"], rec.get("public", False)))
        return out

    def create_bucket(self, bucket: str, public: bool, now: float) -> None:
        d = self._bucket_dir(bucket)
        try:
            d.mkdir()
        except FileExistsError:
            if (d / ".bucket").exists():
                raise S3Error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                              "succeeded and you already own it.", f"/{bucket}", BucketName=bucket) from None
        self._write_bucket(d, {"created": now, "public": public})
        self._known[bucket] = BucketInfo(bucket, now, public)

    def _write_bucket(self, d: Path, rec: dict[str, Any]) -> None:
        tmp = self.tmp / uuid.uuid4().hex
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, d / ".bucket")

    def set_public(self, bucket: str, public: bool) -> None:
        info = self.bucket(bucket)
        self._write_bucket(self.buckets / bucket, {"created": info.created, "public": public})
        self._known[bucket] = BucketInfo(bucket, info.created, public)

    def delete_bucket(self, bucket: str) -> None:
        d = self._bucket_dir(bucket)
        self.bucket(bucket)
        if any(e.name != ".bucket" for e in os.scandir(d)):
            raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", f"/{bucket}",
                          BucketName=bucket)
        for u in list(self.uploads.iterdir()):  # abandon its multipart uploads
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads((u / "upload.json").read_bytes())["bucket"] == bucket:
                    shutil.rmtree(u, ignore_errors=True)
        trash = self.tmp / ("bucket-" + uuid.uuid4().hex)
        self._known.pop(bucket, None)
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- objects --------------------------------------------------------------------------------------

    def object_path(self, bucket: str, key: str) -> Path:
        validate_key(key)
        segs = key.split("/")
        return self._bucket_dir(bucket).joinpath(*[_enc(s) for s in segs[:-1]], _enc(segs[-1]) + ".o")

    def writer(self) -> Writer:
        return Writer(self.tmp, self.max_object_size, self.fsync)

    async def put_object(self, bucket: str, key: str, chunks: AsyncIterator[bytes], info: ObjectInfo,
                         checks: PutChecks) -> ObjectInfo:
        """Store an object from a stream of chunks; visible only once complete and verified."""
        dest = self.object_path(bucket, key)
        self.bucket(bucket)
        try:
            w = self.writer()
        except OSError as e:
            raise _io_error(e) from e
        try:
            w.want(checks)
            async for chunk in chunks:
                if chunk:
                    w.write(chunk)
            w.verify(checks)
            info.size = w.size
            info.etag = w.md5.hexdigest()
            if checks.crc32_b64:
                info.checksums["crc32"] = checks.crc32_b64
            w.finish(info)
            w.commit(dest)
        except BaseException:
            w.abort()
            raise
        return info

    def _object_file(self, bucket: str, key: str) -> str:
        """`object_path` as a string, without pathlib (the read path is hot)."""
        if bucket not in self._known:
            validate_bucket_name(bucket)
        validate_key(key)
        segs = key.split("/")
        return os.path.join(self._root_str, bucket, *[_enc(s) for s in segs[:-1]], _enc(segs[-1]) + ".o")

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        path = self._object_file(bucket, key)
        try:
            return read_info(path)[0]
        except FileNotFoundError:
            self.bucket(bucket)
            raise no_such_key(bucket, key) from None

    def open_object(self, bucket: str, key: str) -> tuple[ObjectInfo, int]:
        """(info, fd) of an object; the caller closes fd. The open file stays the same object even if it is
        replaced or deleted meanwhile."""
        path = self._object_file(bucket, key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self.bucket(bucket)
            raise no_such_key(bucket, key) from None
        try:
            info, _ = _read_info_fd(fd)
        except BaseException:
            os.close(fd)
            raise
        return info, fd

    @staticmethod
    async def read_range(fd: int, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of an open object file, in chunks; closes fd when done."""
        try:
            pos = start
            while pos < end:
                chunk = os.pread(fd, min(READ_CHUNK, end - pos), pos)
                if not chunk:
                    break
                pos += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def delete_object(self, bucket: str, key: str) -> bool:
        """Delete an object; False when it did not exist (S3 answers 204 either way)."""
        path = self.object_path(bucket, key)
        self.bucket(bucket)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        root = self.buckets / bucket
        parent = path.parent
        while parent != root:  # prune empty prefix directories
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def iter_keys(self, bucket: str, prefix: str, after: str) -> Iterator[str]:
        """Keys of `bucket` starting with `prefix` and greater than `after`, in UTF-8 byte order."""
        root = self._bucket_dir(bucket)
        self.bucket(bucket)
        yield from self._walk(root, "", prefix, after)

    def _walk(self, d: Path, base: str, prefix: str, after: str) -> Iterator[str]:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return
        entries: list[tuple[str, bool, str]] = []
        for n in names:
            if not n.startswith("_"):
                continue
            if n.endswith(".o"):
                entries.append((base + _dec(n[:-2]), False, n))
            else:
                entries.append((base + _dec(n) + "/", True, n))
        entries.sort(key=lambda e: e[0])
        for full, is_dir, n in entries:
            if is_dir:
                if not (full.startswith(prefix) or prefix.startswith(full)):
                    continue
                if full <= after and not after.startswith(full):
                    continue  # every key below is <= after
                yield from self._walk(d / n, full, prefix, after)
            elif full > after and full.startswith(prefix):
                yield full

    def list_objects(self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int,
                     ) -> tuple[list[ObjectInfo], list[str], bool, str]:
        """(objects, common prefixes, truncated, last key or prefix returned) — ListObjects semantics."""
        contents: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = ""
        if delimiter and after.startswith(prefix) and after.endswith(delimiter) and delimiter in after[len(prefix):]:
            after += "\U0010ffff"  # a marker/token that is a common prefix: continue after everything under it
        while True:
            restart = None
            for key in self.iter_keys(bucket, prefix, after):
                if len(contents) + len(prefixes) >= max_keys:
                    return contents, prefixes, True, last
                if delimiter:
                    i = key.find(delimiter, len(prefix))
                    if i >= 0:
                        cp = key[: i + len(delimiter)]
                        prefixes.append(cp)
                        last = cp
                        restart = cp + "\U0010ffff"  # skip everything under the common prefix
                        break
                try:
                    contents.append(self.head_object(bucket, key))
                except S3Error:
                    continue  # deleted meanwhile
                last = key
            if restart is None:
                return contents, prefixes, False, last
            after = restart

    # -- multipart ------------------------------------------------------------------------------------

    def create_upload(self, bucket: str, key: str, info: ObjectInfo) -> str:
        self.object_path(bucket, key)
        self.bucket(bucket)
        upload_id = uuid.uuid4().hex
        d = self.uploads / upload_id
        d.mkdir()
        rec = {"bucket": bucket, "key": key, "info": info.to_meta(), "created": time.time()}
        (d / "upload.json").write_text(json.dumps(rec))
        return upload_id

    def upload(self, bucket: str, key: str, upload_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise _no_upload(upload_id)
        try:
            rec = json.loads((self.uploads / upload_id / "upload.json").read_bytes())
        except FileNotFoundError:
            raise _no_upload(upload_id) from None
        if rec["bucket"] != bucket or rec["key"] != key:
            raise _no_upload(upload_id)
        return rec

    async def put_part(self, bucket: str, key: str, upload_id: str, number: int, chunks: AsyncIterator[bytes],
                       checks: PutChecks) -> str:
        if not 1 <= number <= MAX_PARTS:
            raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
        self.upload(bucket, key, upload_id)
        try:
            w = self.writer()
        except OSError as e:
            raise _io_error(e) from e
        try:
            w.want(checks)
            async for chunk in chunks:
                if chunk:
                    w.write(chunk)
            w.verify(checks)
            etag = w.md5.hexdigest()
            w.finish(ObjectInfo(str(number), w.size, etag, time.time()))
            if not (self.uploads / upload_id).is_dir():
                raise _no_upload(upload_id)
            w.commit(self.uploads / upload_id / str(number))
        except BaseException:
            w.abort()
            raise
        return etag

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[ObjectInfo]:
        self.upload(bucket, key, upload_id)
        parts = []
        for p in (self.uploads / upload_id).iterdir():
            if p.name.isdigit():
                with contextlib.suppress(FileNotFoundError):
                    parts.append(read_info(p)[0])
        return sorted(parts, key=lambda i: int(i.key))

    async def complete_upload(self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]) -> ObjectInfo:
        rec = self.upload(bucket, key, upload_id)
        if not parts:
            raise S3Error(400, "MalformedXML", "You must specify at least one part")
        if [n for n, _ in parts] != sorted({n for n, _ in parts}):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        d = self.uploads / upload_id
        files = []
        total = 0
        md5s = b""
        for i, (n, etag) in enumerate(parts):
            try:
                info, size = read_info(d / str(n))
            except FileNotFoundError:
                raise S3Error(400, "InvalidPart", f"part {n} was not uploaded") from None
            if etag.strip('"') != info.etag:
                raise S3Error(400, "InvalidPart", f"the ETag of part {n} does not match")
            if size < MIN_PART_SIZE and i < len(parts) - 1:
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed "
                              "object size.", PartNumber=str(n))
            total += size
            md5s += bytes.fromhex(info.etag)
            files.append((d / str(n), size))
        if total > self.max_object_size:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        info = ObjectInfo.from_meta(rec["info"])
        info.size = total
        info.etag = f"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"
        info.last_modified = time.time()
        dest = self.object_path(bucket, key)
        self.bucket(bucket)
        await asyncio.to_thread(self._assemble, files, info, dest)
        shutil.rmtree(d, ignore_errors=True)
        return info

    def _assemble(self, files: list[tuple[Path, int]], info: ObjectInfo, dest: Path) -> None:
        w = Writer(self.tmp, self.max_object_size, self.fsync)
        try:
            for path, size in files:
                with open(path, "rb") as f:
                    left = size
                    while left > 0:
                        chunk = f.read(min(1024 * 1024, left))
                        if not chunk:
                            raise S3Error(500, "InternalError", "a part file is shorter than recorded")
                        left -= len(chunk)
                        try:
                            os.write(w.fd, chunk)
                        except OSError as e:
                            raise _io_error(e) from e
            w.finish(info)
            w.commit(dest)
        except BaseException:
            w.abort()
            raise

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.upload(bucket, key, upload_id)
        trash = self.tmp / ("upload-" + uuid.uuid4().hex)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.uploads / upload_id, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def list_uploads(self, bucket: str) -> list[dict[str, Any]]:
        self.bucket(bucket)
        out = []
        for u in self.uploads.iterdir():
            with contextlib.suppress(OSError, ValueError, KeyError):
                rec = json.loads((u / "upload.json").read_bytes())
                if rec["bucket"] == bucket:
                    out.append({"key": rec["key"], "upload_id": u.name, "created": rec["created"]})
        return sorted(out, key=lambda r: (r["key"], r["created"]))


def _no_upload(upload_id: str) -> S3Error:
    return S3Error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the "
                   "upload may have been aborted or completed.", UploadId=upload_id)
