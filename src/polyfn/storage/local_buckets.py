"""Bucket records of the `local` backend (mixed into `LocalBackend`, storage/local.py):
`buckets/<bucket>/.bucket`, a JSON record (created, ACL, versioning, tags, CORS …) written whole (a temporary file
renamed over it) and kept in memory once read or written by this process (`_known`). A bucket is deleted by
renaming its directory into `tmp/` and removing it there (empty, or with everything in it for `destroy_bucket`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfn.storage.errors import S3Error, no_such_bucket
from polyfn.storage.model import BucketInfo, validate_bucket_name


class BucketRecords:
    buckets: Path
    tmp: Path
    _known: dict[str, BucketInfo]
    use: Any

    if TYPE_CHECKING:
        def abandon_uploads(self, bucket: str) -> Any: ...

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
        info = self._known[bucket] = BucketInfo.from_record(bucket, rec)
        return info

    def list_buckets(self) -> list[BucketInfo]:
        out = []
        for d in sorted(self.buckets.iterdir()):
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                out.append(BucketInfo.from_record(d.name, json.loads((d / ".bucket").read_bytes())))
        return out

    def create_bucket(self, info: BucketInfo) -> bool:
        """Create the bucket; False when it exists already (S3's us-east-1 answers 200 to its owner then)."""
        d = self._bucket_dir(info.name)
        try:
            d.mkdir()
        except FileExistsError:
            if (d / ".bucket").exists():
                return False
        self._write_bucket(info)
        return True

    def _write_bucket(self, info: BucketInfo) -> None:
        tmp = self.tmp / uuid.uuid4().hex
        tmp.write_text(json.dumps(info.to_record()))
        os.replace(tmp, self.buckets / info.name / ".bucket")
        self._known[info.name] = info

    def update_bucket(self, bucket: str, **changes: Any) -> BucketInfo:
        info = self.bucket(bucket)
        keys = {"public_access_block": "pab", "kms_key_id": "kms"}
        new = BucketInfo.from_record(bucket, {**info.to_record(), **{keys.get(k, k): v for k, v in changes.items()}})
        self._write_bucket(new)
        return new

    def delete_bucket(self, bucket: str) -> None:
        d = self._bucket_dir(bucket)
        self.bucket(bucket)
        if any(e.name != ".bucket" for e in os.scandir(d)):
            raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", f"/{bucket}",
                          BucketName=bucket)
        self.destroy_bucket(bucket)

    def destroy_bucket(self, bucket: str) -> None:
        """Delete a bucket with everything in it (its namespace was deleted: tenancy.py)."""
        d = self._bucket_dir(bucket)
        self.bucket(bucket)
        self.abandon_uploads(bucket)
        trash = self.tmp / ("bucket-" + uuid.uuid4().hex)
        self._known.pop(bucket, None)
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)
        if self.use is not None:
            self.use.forget(bucket)
