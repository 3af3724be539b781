"""Multipart uploads of the `local` backend (mixed into `LocalBackend`).

    uploads/<upload id>/upload.json    bucket, key, the object's record to be, encryption, checksum algorithm
    uploads/<upload id>/<n>            part n: its (encrypted) data + a trailer with size, ETag, checksum, IV
    uploads/<upload id>/done.json      after completion: what it made, so a repeated Complete answers the same

Completion concatenates the parts' stored bytes as they are (the kernel copies them; encrypted parts keep
their own IVs, so nothing is decrypted), then commits the file as a new version like a PUT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfn.storage import checksums
from polyfn.storage import sse as sse_mod
from polyfn.storage.errors import S3Error, invalid_argument
from polyfn.storage.model import MAX_PARTS, MIN_PART_SIZE, ObjectInfo, Precondition, PutChecks
from polyfn.storage.objfile import Writer, copy_data, read_info, read_info_fd

COMPLETED_KEPT = 24 * 3600  # seconds a completed upload answers a repeated CompleteMultipartUpload


def no_upload(upload_id: str) -> S3Error:
    return S3Error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the "
                   "upload may have been aborted or completed.", UploadId=upload_id)


class Uploads:
    uploads: Path
    tmp: Path
    max_object_size: int
    fsync: bool

    if TYPE_CHECKING:
        def object_path(self, bucket: str, key: str) -> Path: ...
        def bucket(self, bucket: str) -> Any: ...
        def writer(self) -> Writer: ...
        def key_lock(self, bucket: str, key: str) -> Any: ...
        def commit(self, bucket: str, key: str, w: Writer, info: ObjectInfo, dest: Path,
                   precondition: Precondition | None = None) -> None: ...

    def create_upload(self, bucket: str, key: str, info: ObjectInfo, encryption: dict[str, Any] | None = None,
                      algo: str = "", checksum_type: str = "") -> str:
        self.object_path(bucket, key)
        self.bucket(bucket)
        upload_id = uuid.uuid4().hex
        d = self.uploads / upload_id
        d.mkdir()
        rec = {"bucket": bucket, "key": key, "info": info.to_meta(), "created": time.time(), "sse": encryption or {},
               "algo": algo, "ctype": checksum_type}
        (d / "upload.json").write_text(json.dumps(rec))
        return upload_id

    def upload(self, bucket: str, key: str, upload_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise no_upload(upload_id)
        try:
            rec = json.loads((self.uploads / upload_id / "upload.json").read_bytes())
        except FileNotFoundError:
            raise no_upload(upload_id) from None
        if rec["bucket"] != bucket or rec["key"] != key:
            raise no_upload(upload_id)
        return rec

    async def put_part(self, bucket: str, key: str, upload_id: str, number: int, chunks: AsyncIterator[bytes],
                       checks: PutChecks, data_key: bytes | None = None) -> ObjectInfo:
        if not 1 <= number <= MAX_PARTS:
            raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
        rec = self.upload(bucket, key, upload_id)
        if rec["algo"] and rec["algo"] not in checks.compute:
            checks.compute = (*checks.compute, rec["algo"])
        w = self.writer()
        try:
            w.want(checks)
            part = ObjectInfo(str(number), 0, "", time.time())
            if rec["sse"]:
                assert data_key is not None
                iv = sse_mod.new_iv()
                w.cipher = sse_mod.encryptor(data_key, iv)
                part.sse = {"ivs": [base64.b64encode(iv).decode()]}
            async for chunk in chunks:
                if chunk:
                    w.write(chunk)
            part.checksums = w.verify(checks)
            part.size, part.etag = w.size, w.md5.hexdigest()
            w.finish(part)
            if not (self.uploads / upload_id / "upload.json").is_file():
                raise no_upload(upload_id)
            w.commit(self.uploads / upload_id / str(number))
        except BaseException:
            w.abort()
            raise
        return part

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[ObjectInfo]:
        self.upload(bucket, key, upload_id)
        parts = []
        for p in (self.uploads / upload_id).iterdir():
            if p.name.isdigit():
                with contextlib.suppress(FileNotFoundError):
                    parts.append(read_info(p)[0])
        return sorted(parts, key=lambda i: int(i.key))

    def completed(self, bucket: str, key: str, upload_id: str) -> dict[str, Any] | None:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            return None
        try:
            done = json.loads((self.uploads / upload_id / "done.json").read_bytes())
        except FileNotFoundError:
            return None
        return done if (done["bucket"], done["key"]) == (bucket, key) else None

    async def complete_upload(self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str, dict[str, str]]],
                              whole: dict[str, str] | None = None, precondition: Precondition | None = None,
                              ) -> ObjectInfo:
        """Assemble the listed parts into the key's new version. `whole`: a checksum of the whole upload the
        client sent (checked). Repeating a successful completion answers its result again."""
        done = self.completed(bucket, key, upload_id)
        if done is not None:
            if [(n, e.strip('"')) for n, e, _ in parts] != [tuple(p) for p in done["parts"]]:
                raise no_upload(upload_id)
            return ObjectInfo.from_meta(done["info"])
        rec = self.upload(bucket, key, upload_id)
        if not parts:
            raise S3Error(400, "MalformedXML", "You must specify at least one part")
        numbers = [n for n, _, _ in parts]
        if numbers != sorted(numbers):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        parts = list({n: (n, etag, given) for n, etag, given in parts}.values())  # a part listed twice: the last
        d = self.uploads / upload_id
        files, sizes, md5s, ivs, sums = [], [], b"", [], []
        algo = rec["algo"]
        for i, (n, etag, given) in enumerate(parts):
            try:
                info, size = read_info(d / str(n))
            except FileNotFoundError:
                raise S3Error(400, "InvalidPart", f"part {n} was not uploaded", PartNumber=str(n)) from None
            if etag.strip('"') != info.etag:
                raise S3Error(400, "InvalidPart", f"the ETag of part {n} does not match", PartNumber=str(n))
            for a, v in given.items():
                if info.checksums.get(a) != v:
                    raise S3Error(400, "InvalidPart", f"the {a.upper()} checksum of part {n} does not match")
            if size < MIN_PART_SIZE and i < len(parts) - 1:
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed "
                              "object size.", PartNumber=str(n))
            sizes.append(size)
            md5s += bytes.fromhex(info.etag)
            files.append((d / str(n), size))
            if rec["sse"]:
                ivs.extend(info.sse["ivs"])
            if algo:
                sums.append(info.checksums.get(algo, ""))
        if sum(sizes) > self.max_object_size:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        info = ObjectInfo.from_meta(rec["info"])
        info.size = sum(sizes)
        info.etag = f"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"
        info.last_modified = time.time()
        info.parts = sizes
        if rec["sse"]:
            info.sse = {**rec["sse"], "ivs": ivs}
        if algo and all(sums):
            ctype = rec["ctype"] or ("FULL_OBJECT" if algo in checksums.CRCS else "COMPOSITE")
            value = (checksums.full_object(algo, sums, sizes) if ctype == "FULL_OBJECT"
                     else checksums.composite(algo, sums))
            info.checksums, info.checksum_type, info.part_checksums = {algo: value}, ctype, sums
        for a, v in (whole or {}).items():
            if info.checksums.get(a) != v and info.checksums.get(a, "").split("-")[0] != v:
                raise S3Error(400, "BadDigest", f"The {a.upper()} you specified for the upload did not match the "
                              "calculated checksum.")
        dest = self.object_path(bucket, key)
        w = await asyncio.to_thread(self._assemble, files)
        try:
            async with self.key_lock(bucket, key):
                self.commit(bucket, key, w, info, dest, precondition)
        except BaseException:
            w.abort()
            raise
        done = {"bucket": bucket, "key": key, "parts": [(n, e.strip('"')) for n, e, _ in parts],
                "info": info.to_meta(), "at": time.time()}
        tmp = self.tmp / uuid.uuid4().hex
        tmp.write_text(json.dumps(done))
        os.replace(tmp, d / "done.json")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(d / "upload.json")
        for f, _ in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        return info

    def _assemble(self, files: list[tuple[Path, int]]) -> Writer:
        w = Writer(self.tmp, self.max_object_size, self.fsync)
        try:
            for path, size in files:
                fd = os.open(path, os.O_RDONLY)
                try:
                    copy_data(fd, w.fd, 0, size)
                finally:
                    os.close(fd)
            os.lseek(w.fd, 0, os.SEEK_END)
        except BaseException:
            w.abort()
            raise
        return w

    def part_file(self, upload_id: str, number: int) -> tuple[ObjectInfo, int]:
        fd = os.open(self.uploads / upload_id / str(number), os.O_RDONLY)
        return read_info_fd(fd)[0], fd

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

    def abandon_uploads(self, bucket: str) -> None:
        for u in list(self.uploads.iterdir()):
            for name in ("upload.json", "done.json"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    if json.loads((u / name).read_bytes())["bucket"] == bucket:
                        shutil.rmtree(u, ignore_errors=True)

    def expire_completed(self, now: float | None = None) -> None:
        """Forget completed uploads older than COMPLETED_KEPT (called at start)."""
        now = time.time() if now is None else now
        for u in list(self.uploads.iterdir()):
            with contextlib.suppress(OSError, ValueError, KeyError):
                if now - json.loads((u / "done.json").read_bytes())["at"] > COMPLETED_KEPT:
                    shutil.rmtree(u, ignore_errors=True)
