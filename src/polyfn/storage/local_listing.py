"""Listing of the `local` backend (mixed into `LocalBackend`, storage/local.py): a bucket's keys in UTF-8 byte
order, walked from the layout's directories (a key's segments are `_<seg>` directories, its current version
`_<seg>.o`, its other versions `_<seg>.v/`), ListObjects' common prefixes and pages over them, and a bucket's usage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfn.storage.errors import S3Error
from polyfn.storage.objfile import dec, read_info

if TYPE_CHECKING:
    from polyfn.storage.model import BucketInfo, ObjectInfo


class Listing:
    if TYPE_CHECKING:
        def _bucket_dir(self, bucket: str) -> Path: ...
        def bucket(self, bucket: str) -> BucketInfo: ...
        def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo: ...

    def iter_keys(self, bucket: str, prefix: str, after: str, versions: bool = False) -> Iterator[str]:
        """Keys of `bucket` starting with `prefix` and greater than `after`, in UTF-8 byte order; with
        `versions`, also keys whose versions are all noncurrent (deleted)."""
        root = self._bucket_dir(bucket)
        self.bucket(bucket)
        yield from self._walk(root, "", prefix, after, versions)

    def _walk(self, d: Path, base: str, prefix: str, after: str, versions: bool) -> Iterator[str]:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return
        entries: dict[str, tuple[bool, str]] = {}
        for n in names:
            if not n.startswith("_"):
                continue
            if n.endswith(".o") or (versions and n.endswith(".v")):
                entries.setdefault(base + dec(n[:-2]), (False, n))
            elif not n.endswith(".v"):
                entries[base + dec(n) + "/"] = (True, n)
        for full in sorted(entries):
            is_dir, n = entries[full]
            if is_dir:
                if not (full.startswith(prefix) or prefix.startswith(full)):
                    continue
                if full <= after and not after.startswith(full):
                    continue  # every key below is <= after
                yield from self._walk(d / n, full, prefix, after, versions)
            elif full > after and full.startswith(prefix):
                yield full

    def list_objects(self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int,
                     versions: bool = False) -> tuple[list[Any], list[str], bool, str]:
        """(objects, common prefixes, truncated, last key or prefix returned) — ListObjects semantics; with
        `versions`, the entries are keys (the caller lists their versions)."""
        contents: list[Any] = []
        prefixes: list[str] = []
        last = ""
        if delimiter and after.startswith(prefix) and after.endswith(delimiter) and delimiter in after[len(prefix):]:
            after += "\U0010ffff"  # a marker/token that is a common prefix: continue after everything under it
        while True:
            restart = None
            for key in self.iter_keys(bucket, prefix, after, versions):
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
                if versions:
                    contents.append(key)
                else:
                    try:
                        contents.append(self.head_object(bucket, key))
                    except S3Error:
                        continue  # deleted meanwhile
                last = key
            if restart is None:
                return contents, prefixes, False, last
            after = restart

    def usage(self, bucket: str) -> tuple[int, int]:
        """(objects, bytes) of a bucket, every version counted."""
        n = size = 0
        for dirpath, _dirs, files in os.walk(self._bucket_dir(bucket)):
            for f in files:
                if f != ".bucket":
                    with contextlib.suppress(OSError, S3Error):
                        info = read_info(os.path.join(dirpath, f))[0]
                        if not info.delete_marker:
                            n += 1
                            size += info.size
        return n, size
