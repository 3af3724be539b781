"""The `local` backend: buckets and object versions in a directory (default `<data dir>/storage`).

Layout::

    buckets/<bucket>/.bucket                  bucket record (JSON: created, ACL, versioning, tags, CORS …)
    buckets/<bucket>/_<seg>/_<seg>.o          the key's current version, when it is an object (`objfile`)
    buckets/<bucket>/_<seg>/_<seg>.v/<id>     its other versions and its delete markers, one file each
    uploads/<upload id>/upload.json           a multipart upload in progress; parts are `<n>` files (`uploads`)
    tmp/                                      files being written; emptied at start

One rule keeps reads cheap and crashes harmless: `.o` exists exactly when the newest version is an object,
so a plain GET or listing never looks at `.v/`. A new version first hard-links the current one into `.v/`,
then renames itself over `.o` (a crash in between leaves the old version listed twice, never missing); a
version is ordered by its `seq`. Changes to one key are serialised by a per-key lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyfn.storage import sse as sse_mod
from polyfn.storage.errors import S3Error, invalid_argument, no_such_key
from polyfn.storage.local_buckets import BucketRecords
from polyfn.storage.local_listing import Listing
from polyfn.storage.model import (
    NULL_VERSION,
    BucketInfo,
    ObjectInfo,
    Precondition,
    PutChecks,
    validate_bucket_name,
    validate_key,
)
from polyfn.storage.objfile import READ_CHUNK, Writer, enc, read_info, read_info_fd, rewrite
from polyfn.storage.uploads import Uploads


@dataclass(slots=True)
class Deleted:
    version_id: str  # the version removed or the delete marker made ("" when nothing was versioned)
    delete_marker: bool  # a marker was made, or the version removed was one
    existed: bool  # an object (not a marker) stopped being current: the `deleted` event


def no_such_version(bucket: str, key: str, version_id: str) -> S3Error:
    return S3Error(404, "NoSuchVersion", "The specified version does not exist.", f"/{bucket}/{key}", Key=key,
                   VersionId=version_id)


def check_version_id(version_id: str) -> None:
    if version_id != NULL_VERSION and (len(version_id) != 32 or not all(c in "0123456789abcdef" for c in version_id)):
        raise invalid_argument("Invalid version id specified")


def lock_blocks(info: ObjectInfo, now: float, bypass_governance: bool) -> str:
    """Why Object Lock forbids deleting (or overwriting the retention of) this version, or ""."""
    if info.legal_hold:
        return "the object version is under legal hold"
    if info.lock_mode and info.lock_until > now and not (info.lock_mode == "GOVERNANCE" and bypass_governance):
        return f"the object version is locked in {info.lock_mode} mode until it expires"
    return ""


class KeyLocks:
    """A lock per (bucket, key), there while it is held or waited for."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, bucket: str, key: str) -> AsyncIterator[None]:
        k = (bucket, key)
        lock = self._locks.get(k)
        if lock is None:
            lock = self._locks[k] = asyncio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock._waiters:  # type: ignore[attr-defined]
                self._locks.pop(k, None)


class LocalBackend(BucketRecords, Listing, Uploads):
    name = "local"

    def __init__(self, root: Path, max_object_size: int, fsync: bool = False, keys: sse_mod.Keys | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.buckets = root / "buckets"
        self.uploads = root / "uploads"
        self.tmp = root / "tmp"
        self.max_object_size = max_object_size
        self.fsync = fsync
        self.keys = keys  # SSE data keys (None: encryption refused)
        self.clock = clock
        self._root_str = str(self.buckets)
        self._known: dict[str, BucketInfo] = {}  # bucket records read or written by this process
        self.key_lock = KeyLocks().hold  # changes to one key, one at a time
        self._seq = 0
        self.use: Any = None  # storage/use.StorageUse: what each bucket holds, and the storage_bytes quota

    def open(self) -> None:
        for d in (self.buckets, self.uploads, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        for f in self.tmp.iterdir():  # left by a killed server: never visible, now gone
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    f.unlink()
        self.expire_completed()

    def next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns())
        return self._seq

    def new_version_id(self, seq: int) -> str:
        return f"{seq:016x}{os.urandom(8).hex()}"

    # -- paths ----------------------------------------------------------------------------------------

    def object_path(self, bucket: str, key: str) -> Path:
        validate_key(key)
        segs = key.split("/")
        return self._bucket_dir(bucket).joinpath(*[enc(s) for s in segs[:-1]], enc(segs[-1]) + ".o")

    def _object_file(self, bucket: str, key: str) -> str:
        """`object_path` as a string, without pathlib (the read path is hot)."""
        if bucket not in self._known:
            validate_bucket_name(bucket)
        validate_key(key)
        segs = key.split("/")
        return os.path.join(self._root_str, bucket, *[enc(s) for s in segs[:-1]], enc(segs[-1]) + ".o")

    @staticmethod
    def _vdir(current: str | Path) -> str:
        return str(current)[:-2] + ".v"

    def writer(self) -> Writer:
        return Writer(self.tmp, self.max_object_size, self.fsync)

    # -- versions of one key --------------------------------------------------------------------------

    def versions(self, bucket: str, key: str) -> list[tuple[ObjectInfo, str]]:
        """Every version of a key (and its delete markers) with its file, newest first."""
        cur = self._object_file(bucket, key)
        out: list[tuple[ObjectInfo, str]] = []
        with contextlib.suppress(FileNotFoundError):
            out.append((read_info(cur)[0], cur))
        vdir = self._vdir(cur)
        try:
            names = os.listdir(vdir)
        except FileNotFoundError:
            names = []
        older = []
        for n in names:
            if out and n == out[0][0].version_id:
                continue  # linked into .v/ by a write that a crash interrupted
            with contextlib.suppress(FileNotFoundError):
                older.append((read_info(os.path.join(vdir, n))[0], os.path.join(vdir, n)))
        older.sort(key=lambda e: e[0].seq, reverse=True)
        return out + older

    def _find(self, bucket: str, key: str, version_id: str | None) -> tuple[ObjectInfo, str]:
        """The version asked for (None: the current one); S3's errors for a missing one or a delete marker."""
        if version_id is None:
            path = self._object_file(bucket, key)
            try:
                return read_info(path)[0], path
            except FileNotFoundError:
                self.bucket(bucket)
                err = no_such_key(bucket, key)
                vs = self.versions(bucket, key)
                if vs and vs[0][0].delete_marker:
                    err.headers = [(b"x-amz-delete-marker", b"true"),
                                   (b"x-amz-version-id", vs[0][0].version_id.encode())]
                raise err from None
        check_version_id(version_id)
        for info, path in self.versions(bucket, key):
            if info.version_id == version_id:
                if info.delete_marker:
                    err = S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this "
                                  "resource.", Method="GET", ResourceType="DeleteMarker")
                    err.headers = [(b"x-amz-delete-marker", b"true"), (b"x-amz-version-id", version_id.encode()),
                                   (b"allow", b"DELETE")]
                    raise err
                return info, path
        self.bucket(bucket)
        if version_id == NULL_VERSION or not self.bucket(bucket).versioning:
            raise no_such_key(bucket, key) if version_id == NULL_VERSION else no_such_version(bucket, key, version_id)
        raise no_such_version(bucket, key, version_id)

    def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        return self._find(bucket, key, version_id)[0]

    def open_object(self, bucket: str, key: str, version_id: str | None = None) -> tuple[ObjectInfo, int]:
        """(info, fd) of a version; the caller closes fd. The open file stays the same version even if it is
        replaced or deleted meanwhile."""
        for _ in range(3):
            _, path = self._find(bucket, key, version_id)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # replaced between the lookup and the open
            try:
                info, _ = read_info_fd(fd)
            except BaseException:
                os.close(fd)
                raise
            return info, fd
        raise no_such_key(bucket, key)

    def stream(self, fd: int, info: ObjectInfo, start: int, end: int, data_key: bytes | None = None,
               ) -> AsyncIterator[bytes]:
        """Plaintext bytes [start, end) of an open version, in chunks; closes fd when done."""
        if not info.sse:
            return read_range(fd, start, end)
        assert data_key is not None
        return _read_decrypted(fd, info, start, end, data_key)

    # -- writes ---------------------------------------------------------------------------------------

    async def put_object(self, bucket: str, key: str, chunks: AsyncIterator[bytes], info: ObjectInfo,
                         checks: PutChecks, encryption: tuple[bytes, dict[str, Any]] | None = None,
                         precondition: Precondition | None = None) -> ObjectInfo:
        """Store a new version from a stream of chunks; visible only once complete and verified."""
        dest = self.object_path(bucket, key)
        self.bucket(bucket)
        w = self.writer()
        try:
            w.want(checks)
            if encryption is not None:
                iv = sse_mod.new_iv()
                w.cipher = sse_mod.encryptor(encryption[0], iv)
                info.sse = {**encryption[1], "ivs": [base64.b64encode(iv).decode()]}
            async for chunk in chunks:
                if chunk:
                    w.write(chunk)
            info.checksums = {**info.checksums, **w.verify(checks)}
            info.size = w.size
            info.etag = w.md5.hexdigest()
            async with self.key_lock(bucket, key):
                self.commit(bucket, key, w, info, dest, precondition)
        except BaseException:
            w.abort()
            raise
        return info

    def commit(self, bucket: str, key: str, w: Writer, info: ObjectInfo, dest: Path,
               precondition: Precondition | None = None) -> None:
        """Make a written file the key's current version (call holding the key's lock)."""
        versioning = self.bucket(bucket).versioning
        cur = self._current(dest)
        if precondition is not None:
            precondition(cur)
        # the current version is replaced (not kept among the versions) unless versioning is on or it is not null
        gone = cur.size if cur is not None and (
            not versioning or (versioning != "Enabled" and cur.version_id == NULL_VERSION)) else None
        if self.use is not None:
            self.use.admit(bucket, info.size - (gone or 0))
        info.seq = self.next_seq()
        info.version_id = self.new_version_id(info.seq) if versioning == "Enabled" else NULL_VERSION
        w.finish(info)
        if versioning:
            self._retire(dest, cur, keep=versioning == "Enabled")
        w.commit(dest)
        if self.use is not None:
            self.use.changed(bucket, info.size - (gone or 0), 0 if gone is not None else 1)

    @staticmethod
    def _current(dest: Path) -> ObjectInfo | None:
        try:
            return read_info(dest)[0]
        except FileNotFoundError:
            return None

    def _retire(self, dest: Path, cur: ObjectInfo | None, keep: bool) -> None:
        """Before a new current version (or a marker) of a versioned key: keep the current one in `.v/`
        unless it is the null version being replaced (suspended), and drop an older null version."""
        vdir = self._vdir(dest)
        os.makedirs(vdir, exist_ok=True)
        if cur is not None and (keep or cur.version_id != NULL_VERSION):
            with contextlib.suppress(FileExistsError):
                os.link(dest, os.path.join(vdir, cur.version_id))
        if not keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(vdir, NULL_VERSION))

    async def update_object(self, bucket: str, key: str, version_id: str | None,
                            change: Callable[[ObjectInfo], None]) -> ObjectInfo:
        """Change a version's record (tags, ACL, retention, legal hold) without touching its data."""
        async with self.key_lock(bucket, key):
            info, path = self._find(bucket, key, version_id)
            change(info)
            w = await asyncio.to_thread(rewrite, path, self.tmp, info, self.fsync)
            try:
                w.commit(Path(path))
            except BaseException:
                w.abort()
                raise
        return info

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None,
                            bypass_governance: bool = False) -> Deleted:
        """DeleteObject: without a version id, remove the object (unversioned) or add a delete marker;
        with one, remove that version (Object Lock permitting). Nothing existing is not an error."""
        dest = self.object_path(bucket, key)
        versioning = self.bucket(bucket).versioning
        async with self.key_lock(bucket, key):
            if version_id is not None:
                return self._delete_version(bucket, key, dest, version_id, bypass_governance)
            cur = self._current(dest)
            if not versioning:
                if cur is None:
                    return Deleted("", False, False)
                with contextlib.suppress(FileNotFoundError):
                    dest.unlink()
                self._prune(bucket, dest.parent)
                if self.use is not None:
                    self.use.changed(bucket, -cur.size, -1)
                return Deleted("", False, True)
            if self.use is not None and cur is not None and versioning != "Enabled" and cur.version_id == NULL_VERSION:
                self.use.changed(bucket, -cur.size, -1)  # (suspended: the null version is replaced by a marker)
            self._retire(dest, cur, keep=versioning == "Enabled")
            seq = self.next_seq()
            vid = self.new_version_id(seq) if versioning == "Enabled" else NULL_VERSION
            marker = ObjectInfo(key, 0, "", self.clock(), version_id=vid, seq=seq, delete_marker=True)
            w = self.writer()
            try:
                w.finish(marker)
                w.commit(Path(self._vdir(dest)) / vid)
            except BaseException:
                w.abort()
                raise
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            return Deleted(vid, True, cur is not None)

    def _delete_version(self, bucket: str, key: str, dest: Path, version_id: str, bypass: bool) -> Deleted:
        check_version_id(version_id)
        vs = self.versions(bucket, key)
        for i, (info, path) in enumerate(vs):
            if info.version_id != version_id:
                continue
            why = lock_blocks(info, self.clock(), bypass)
            if why:
                raise S3Error(403, "AccessDenied", f"Access Denied because object protected by object lock ({why})")
            os.unlink(path)
            if self.use is not None and not info.delete_marker:
                self.use.changed(bucket, -info.size, -1)
            if not dest.exists():  # the newest remaining version becomes current if it is an object
                rest = self.versions(bucket, key)
                if rest and not rest[0][0].delete_marker:
                    os.replace(rest[0][1], dest)
            self._prune(bucket, dest.parent, Path(self._vdir(dest)))
            return Deleted(version_id, info.delete_marker, i == 0 and not info.delete_marker)
        return Deleted(version_id, False, False)

    def _prune(self, bucket: str, parent: Path, vdir: Path | None = None) -> None:
        """Remove directories a delete left empty (prefixes, a key's `.v/`)."""
        if vdir is not None:
            with contextlib.suppress(OSError):
                vdir.rmdir()
        root = self.buckets / bucket
        while parent != root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

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


async def _read_decrypted(fd: int, info: ObjectInfo, start: int, end: int, data_key: bytes) -> AsyncIterator[bytes]:
    try:
        segs = sse_mod.segments(info.parts or [info.size], info.sse["ivs"])
        for offset, length, cipher, drop in sse_mod.decrypt_ranges(data_key, segs, start, end):
            pos, stop = offset, offset + length
            while pos < stop:
                chunk = os.pread(fd, min(READ_CHUNK, stop - pos), pos)
                if not chunk:
                    return
                pos += len(chunk)
                plain = cipher.update(chunk)
                if drop:
                    plain, drop = plain[drop:], 0
                yield plain
    finally:
        os.close(fd)
