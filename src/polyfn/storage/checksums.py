"""S3's additional checksums: CRC32, CRC32C, CRC64NVME (AWS's own `awscrt`, what botocore uses) and SHA1,
SHA256 (hashlib); one object of each kind per algorithm, fed as the bytes stream by.

Multipart: a COMPOSITE checksum is the algorithm over the parts' raw checksums, suffixed `-N`; a FULL_OBJECT
one (CRCs only) is the CRC of the whole object, combined from the parts' CRCs without reading them again.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from polyfn.storage.errors import S3Error


class _Crcs(dict):  # type: ignore[type-arg]
    """{algorithm: (crc, combine, width)}: `awscrt` imported when a CRC is first computed, not when the node
    starts (its native module is ~3 % of the server's import time)."""

    def __missing__(self, algo: str) -> tuple[Any, Any, int]:
        from awscrt import checksums as crt

        self.update({"crc32": (crt.crc32, crt.combine_crc32, 4), "crc32c": (crt.crc32c, crt.combine_crc32c, 4),
                     "crc64nvme": (crt.crc64nvme, crt.combine_crc64nvme, 8)})
        return dict.__getitem__(self, algo)

    def __contains__(self, algo: object) -> bool:
        return algo in ("crc32", "crc32c", "crc64nvme")


CRCS = _Crcs()
ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
HEADER = "x-amz-checksum-"


class Hasher:
    """Incremental checksum of one algorithm."""

    __slots__ = ("algo", "crc", "h")

    def __init__(self, algo: str) -> None:
        self.algo = algo
        self.crc = 0
        self.h: Any = hashlib.new(algo) if algo in ("sha1", "sha256") else None

    def update(self, data: bytes) -> None:
        if self.h is not None:
            self.h.update(data)
        else:
            self.crc = CRCS[self.algo][0](data, self.crc)

    def digest(self) -> bytes:
        if self.h is not None:
            return bytes(self.h.digest())
        return self.crc.to_bytes(CRCS[self.algo][2], "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode()


def algorithm(name: str) -> str:
    """`CRC32` / `crc32` → `crc32`; 400 InvalidRequest for anything S3 does not have."""
    algo = name.strip().lower()
    if algo not in ALGORITHMS:
        raise S3Error(400, "InvalidRequest", f"Checksum algorithm {name!r} is not supported (CRC32, CRC32C, "
                      "CRC64NVME, SHA1, SHA256)")
    return algo


def from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The checksums a request carries as `x-amz-checksum-<algorithm>` headers (more than one is refused)."""
    found = {k[len(HEADER):]: v for k, v in headers.items()
             if k.startswith(HEADER) and k[len(HEADER):] in ALGORITHMS}
    if len(found) > 1:
        raise S3Error(400, "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types "
                      "are not allowed.")
    return found


def declared(headers: Mapping[str, str]) -> str:
    """The algorithm a request names (`x-amz-sdk-checksum-algorithm` / `x-amz-checksum-algorithm`), or ""."""
    name = headers.get("x-amz-sdk-checksum-algorithm") or headers.get("x-amz-checksum-algorithm") or ""
    return algorithm(name) if name else ""


def decode(algo: str, value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != len(Hasher(algo).digest()):
        raise S3Error(400, "BadDigest", f"Value for x-amz-checksum-{algo} header is invalid.")
    return raw


def composite(algo: str, part_values: list[str]) -> str:
    """COMPOSITE checksum of a multipart object: the algorithm over the parts' raw checksums, `-N`."""
    h = Hasher(algo)
    for v in part_values:
        h.update(base64.b64decode(v))
    return f"{h.b64()}-{len(part_values)}"


def full_object(algo: str, part_values: list[str], part_sizes: list[int]) -> str:
    """FULL_OBJECT CRC of a multipart object, combined from the parts' CRCs and sizes."""
    _, combine, width = CRCS[algo]
    crc = 0
    for i, (v, size) in enumerate(zip(part_values, part_sizes, strict=True)):
        part = int.from_bytes(base64.b64decode(v), "big")
        crc = part if i == 0 else combine(crc, part, size)
    return base64.b64encode(crc.to_bytes(width, "big")).decode()


def response_headers(checksums: Mapping[str, str], checksum_type: str = "") -> list[tuple[bytes, bytes]]:
    out = [((HEADER + algo).encode(), v.encode()) for algo, v in checksums.items()]
    if out:
        out.append((b"x-amz-checksum-type", (checksum_type or "FULL_OBJECT").encode()))
    return out
