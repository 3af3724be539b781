"""One object version on disk: key segments escaped into file names, and the object file itself (the data
followed by a JSON trailer with the record), written to a temporary file while hashing and renamed into place.

Keys never become paths as given: every `/`-separated segment is escaped byte-wise (everything except
ASCII letters, digits, `-` and `_` becomes `%XX`, so no name is ever `.` or `..` and nothing contains a
separator) and prefixed with `_`; objects end in `.o`, so the object `a` and the prefix `a/` live side by
side. One file, written to `tmp/` and renamed into place: a reader sees the old version or the new one,
never a mix, and a killed server leaves nothing half-written in `buckets/`. A change of the record alone
(tags, ACL, retention) writes a new file the same way, the data copied by the kernel.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import struct
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import msgspec

from polyfn.storage import checksums
from polyfn.storage.errors import S3Error, insufficient_storage, invalid_argument
from polyfn.storage.model import ObjectInfo, PutChecks

MAGIC = b"PFO1"
_TRAILER = struct.Struct("!I4s")
READ_CHUNK = 256 * 1024
_SEG_MAX = 240  # bytes of one escaped segment (file names are limited to 255)
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_ENC = [chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256)]


def enc(seg: str) -> str:
    try:
        raw = seg.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_argument("object keys must be valid UTF-8") from None
    out = "_" + "".join([_ENC[b] for b in raw])
    if len(out) > _SEG_MAX:
        raise S3Error(400, "KeyTooLongError", "one /-separated segment of the key is too long for the local "
                      "backend (at most about 80 bytes of non-alphanumeric characters or 239 of alphanumerics)")
    return out


def dec(name: str) -> str:
    return unquote(name[1:], errors="strict")


def io_error(e: OSError) -> S3Error:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return insufficient_storage()
    return S3Error(500, "InternalError", f"storage I/O error: {e.strerror}")


class Writer:
    """Streams bytes into a temp file, hashing the plaintext as it goes (and encrypting it when a cipher is
    set); `commit` renames it into place."""

    def __init__(self, tmp_dir: Path, max_size: int, fsync: bool) -> None:
        self.path = tmp_dir / uuid.uuid4().hex
        self.max_size = max_size
        self.fsync = fsync
        self.md5 = hashlib.md5()
        self.sha256: Any = None
        self.sums: dict[str, checksums.Hasher] = {}
        self.cipher: Any = None
        self.size = 0
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise io_error(e) from e

    def want(self, checks: PutChecks) -> None:
        if checks.sha256_hex:
            self.sha256 = hashlib.sha256()
        for algo in (*checks.checksums, *checks.compute):
            self.sums[algo] = checksums.Hasher(algo)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_size:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                          MaxSizeAllowed=str(self.max_size))
        self.md5.update(chunk)
        if self.sha256 is not None:
            self.sha256.update(chunk)
        for h in self.sums.values():
            h.update(chunk)
        self.write_raw(self.cipher.update(chunk) if self.cipher is not None else chunk)

    def write_raw(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as e:
            raise io_error(e) from e

    def verify(self, checks: PutChecks) -> dict[str, str]:
        """Check the body against what the request declared; the checksums to keep (algorithm → base64)."""
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
        given = dict(checks.checksums)
        for name, value in (checks.trailers or {}).items():
            algo = name.removeprefix(checksums.HEADER)
            if name.startswith(checksums.HEADER) and algo in self.sums:
                given[algo] = value
        kept = {}
        for algo, h in self.sums.items():
            got = h.b64()
            want_b64 = given.get(algo)
            if want_b64 and want_b64 != got:
                checksums.decode(algo, want_b64)  # a malformed value is InvalidRequest, a wrong one BadDigest
                raise S3Error(400, "BadDigest", f"The {algo.upper()} you specified did not match the calculated "
                              "checksum.")
            kept[algo] = got
        return kept

    def finish(self, info: ObjectInfo) -> None:
        meta = msgspec.json.encode(info.to_meta())
        try:
            os.write(self.fd, meta + _TRAILER.pack(len(meta), MAGIC))
            if self.fsync:
                os.fsync(self.fd)
        except OSError as e:
            raise io_error(e) from e
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


def read_info(path: Path | str) -> tuple[ObjectInfo, int]:
    """The record and the byte length of the data; raises FileNotFoundError."""
    with open(path, "rb") as f:
        return read_info_fd(f.fileno())


def read_info_fd(fd: int) -> tuple[ObjectInfo, int]:
    end = os.fstat(fd).st_size
    n, magic = _TRAILER.unpack(os.pread(fd, _TRAILER.size, end - _TRAILER.size))
    if magic != MAGIC:
        raise S3Error(500, "InternalError", "corrupt object file")
    meta = msgspec.json.decode(os.pread(fd, n, end - _TRAILER.size - n))
    return ObjectInfo.from_meta(meta), end - _TRAILER.size - n


def copy_data(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    """Copy bytes between two files in the kernel (copy_file_range; reflinks where the filesystem can)."""
    pos, end = offset, offset + length
    while pos < end:
        try:
            n = os.copy_file_range(src_fd, dst_fd, end - pos, pos)
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                data = os.pread(src_fd, min(READ_CHUNK * 4, end - pos), pos)
                n = os.write(dst_fd, data) if data else 0
            else:
                raise io_error(e) from e
        if n <= 0:
            raise S3Error(500, "InternalError", "an object file is shorter than its record says")
        pos += n


def rewrite(src: str, tmp_dir: Path, info: ObjectInfo, fsync: bool) -> Writer:
    """A new file with the data of `src` and the record `info`, not yet committed (blocking: run in a thread)."""
    w = Writer(tmp_dir, 1 << 62, fsync)
    try:
        fd = os.open(src, os.O_RDONLY)
        try:
            _, length = read_info_fd(fd)
            copy_data(fd, w.fd, 0, length)
        finally:
            os.close(fd)
        os.lseek(w.fd, 0, os.SEEK_END)
        w.finish(info)
    except BaseException:
        w.abort()
        raise
    return w
