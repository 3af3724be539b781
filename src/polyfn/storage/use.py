"""What each bucket and namespace holds in the local object store, kept as counters, and the `storage_bytes` quota.

The counters are counted once when the node starts (a walk of the buckets, before the S3 port answers: the
store on disk is the truth, so they are right after any restart or crash) and then moved by every write the
backend commits (`changed`: a new object or version, a replaced one, a deleted one or version, a bucket
destroyed) — never a walk per request. `admit` is asked before a write is made visible: a write that would take
its namespace past `storage_bytes` is refused with MinIO's `XMinioAdminBucketQuotaExceeded` (400, "Bucket quota
exceeded"), what S3 clients that know quotas (mc, minio-go, minio-py) expect; AWS S3 itself has no bucket quota.
A replacement that does not grow the namespace is always admitted, so a namespace over its quota (a quota
lowered below its use) can still overwrite with smaller objects and delete.

Not exact in one rare case: replacing the null version of a key while versioning is suspended drops an older
null version kept among the versions without counting it out (fixed at the next start).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from polyfn.storage.errors import S3Error
from polyfn.tenancy import DEFAULT

log = logging.getLogger("polyfn.storage")
QUOTA_CODE = "XMinioAdminBucketQuotaExceeded"


class StorageQuotaExceeded(S3Error):
    def __init__(self, namespace: str, limit: int, used: int, adding: int):
        super().__init__(400, QUOTA_CODE, f"Bucket quota exceeded: namespace {namespace!r} is at its "
                         f"storage_bytes quota ({used} bytes used of {limit}; this write adds {adding})")
        self.quota = {"namespace": namespace, "quota": "storage_bytes", "limit": limit, "used": used}


class StorageUse:
    """`backend`: the LocalBackend (its buckets and their namespaces); `quotas(namespace)`: tenancy.Quotas."""

    def __init__(self, backend: Any, quotas: Callable[[str], Any]):
        self.backend = backend
        self.quotas = quotas
        self.buckets: dict[str, list[int]] = {}  # bucket → [objects, bytes]
        self.namespaces: dict[str, list[int]] = {}  # namespace → [objects, bytes]
        self._ns: dict[str, str] = {}  # bucket → its namespace

    def count(self) -> None:
        """Count every bucket (blocking: at start, in a thread, before the store answers)."""
        self.buckets.clear()
        self.namespaces.clear()
        self._ns.clear()
        for b in self.backend.list_buckets():
            objects, size = self.backend.usage(b.name)
            self._ns[b.name] = b.namespace
            self._add(b.name, size, objects)

    def _namespace(self, bucket: str) -> str:
        ns = self._ns.get(bucket)
        if ns is None:
            try:
                ns = self.backend.bucket(bucket).namespace
            except S3Error:
                ns = DEFAULT
            self._ns[bucket] = ns
        return ns

    def _add(self, bucket: str, size: int, objects: int) -> None:
        b = self.buckets.setdefault(bucket, [0, 0])
        b[0] += objects
        b[1] += size
        n = self.namespaces.setdefault(self._namespace(bucket), [0, 0])
        n[0] += objects
        n[1] += size

    def admit(self, bucket: str, adding: int) -> None:
        """Raise `StorageQuotaExceeded` if `adding` more bytes in `bucket` take its namespace past its quota."""
        if adding <= 0:
            return
        ns = self._namespace(bucket)
        limit = self.quotas(ns).storage_bytes
        if limit is None:
            return
        used = self.used(ns)[1]
        if used + adding > limit:
            raise StorageQuotaExceeded(ns, limit, used, adding)

    def changed(self, bucket: str, size: int, objects: int) -> None:
        """A committed write moved `bucket` by `size` bytes and `objects` objects (either may be negative)."""
        if size or objects:
            self._add(bucket, size, objects)

    def forget(self, bucket: str) -> None:
        """`bucket` was destroyed with everything in it (or deleted empty)."""
        b = self.buckets.pop(bucket, None)
        ns = self._ns.pop(bucket, None)
        if b is not None and ns is not None:
            n = self.namespaces.get(ns)
            if n is not None:
                n[0] -= b[0]
                n[1] -= b[1]

    def used(self, namespace: str) -> tuple[int, int]:
        """(objects, bytes) a namespace holds."""
        n = self.namespaces.get(namespace)
        return (n[0], n[1]) if n is not None else (0, 0)

    def bucket_use(self, bucket: str) -> tuple[int, int]:
        b = self.buckets.get(bucket)
        return (b[0], b[1]) if b is not None else (0, 0)
