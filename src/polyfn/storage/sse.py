"""Server-side encryption at rest: SSE-S3 (the node's storage key) and SSE-C (the client's key, never kept).

Every encrypted object has its own random 256-bit data key; the object's record keeps it only wrapped
(AES-GCM) by the key-encryption key: the node's storage key for SSE-S3 (derived from `<data dir>/node.key`
with HKDF), the customer's key for SSE-C. A wrong customer key fails the unwrap (GCM's tag), so nothing
about the customer's key needs storing. The data is AES-256-CTR, one IV per segment (a PUT has one
segment, a multipart object one per part, so parts are never re-encrypted when an upload completes and
a range read decrypts from any block).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from polyfn.storage.errors import S3Error, invalid_argument

AES256 = "AES256"
H_SSE = "x-amz-server-side-encryption"
H_ALG = "x-amz-server-side-encryption-customer-algorithm"
H_KEY = "x-amz-server-side-encryption-customer-key"
H_MD5 = "x-amz-server-side-encryption-customer-key-md5"
COPY_PREFIX = "x-amz-copy-source-server-side-encryption-customer-"
_AAD = b"polyfn-storage-data-key"


def node_storage_key(node_key: bytes) -> bytes:
    """The SSE-S3 key-encryption key, derived from the node key (so it is never a second file to lose)."""
    return HKDF(SHA256(), 32, salt=b"polyfn-storage", info=b"sse-s3 kek").derive(node_key.strip())


def customer_key(headers: Mapping[str, str], prefix: str = "x-amz-server-side-encryption-customer-") -> bytes | None:
    """The SSE-C key a request carries (validated against its MD5), or None when it carries none."""
    alg, key_b64, md5_b64 = (headers.get(prefix + n) for n in ("algorithm", "key", "key-md5"))
    if alg is None and key_b64 is None and md5_b64 is None:
        return None
    if alg != AES256:
        raise invalid_argument("The encryption algorithm must be AES256 (x-amz-server-side-encryption-customer-"
                               "algorithm)")
    try:
        key = base64.b64decode(key_b64 or "", validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise invalid_argument("The secret key was invalid for the specified algorithm (256-bit, base64).")
    if md5_b64 is None or base64.b64encode(hashlib.md5(key).digest()).decode() != md5_b64:
        raise invalid_argument("The calculated MD5 hash of the key did not match the hash that was provided.")
    return key


class Keys:
    """Wraps and unwraps data keys; made once per node with its storage key."""

    def __init__(self, kek: bytes) -> None:
        self._kek = AESGCM(kek)

    def new(self, kind: str, ckey: bytes | None = None) -> tuple[bytes, dict[str, Any]]:
        """A fresh data key and the record to keep (kind "s3" or "c"; ivs are added per segment)."""
        dk = os.urandom(32)
        nonce = os.urandom(12)
        box = AESGCM(ckey) if kind == "c" else self._kek
        assert ckey is not None or kind == "s3"
        wrapped = nonce + box.encrypt(nonce, dk, _AAD)
        return dk, {"kind": kind, "wrapped": base64.b64encode(wrapped).decode(), "ivs": []}

    def unwrap(self, rec: Mapping[str, Any], ckey: bytes | None) -> bytes:
        """The data key of an encrypted object; SSE-C needs the customer's key (400 without it or a wrong one)."""
        raw = base64.b64decode(rec["wrapped"])
        if rec["kind"] == "c":
            if ckey is None:
                raise S3Error(400, "InvalidRequest", "The object was stored using a form of Server Side Encryption. "
                              "The correct parameters must be provided to retrieve the object.")
            box = AESGCM(ckey)
        else:
            box = self._kek
        try:
            return box.decrypt(raw[:12], raw[12:], _AAD)
        except Exception:
            if rec["kind"] == "c":
                raise S3Error(400, "InvalidRequest", "The provided encryption key does not match the key the "
                              "object was stored with.") from None
            raise S3Error(500, "InternalError", "the node's storage key cannot decrypt this object (was node.key "
                          "replaced?)") from None


def new_iv() -> bytes:
    return os.urandom(16)


def encryptor(data_key: bytes, iv: bytes, offset: int = 0) -> Any:
    """A CTR cipher context positioned at `offset` (a multiple of 16) of a segment."""
    counter = (int.from_bytes(iv, "big") + offset // 16) % (1 << 128)
    return Cipher(algorithms.AES(data_key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()


def segments(sizes: list[int], ivs: list[str]) -> list[tuple[int, int, bytes]]:
    """(start, size, iv) of each encrypted segment, in object order."""
    out, pos = [], 0
    for size, iv in zip(sizes, ivs, strict=True):
        out.append((pos, size, base64.b64decode(iv)))
        pos += size
    return out


def decrypt_ranges(data_key: bytes, segs: list[tuple[int, int, bytes]], start: int, end: int,
                   ) -> Iterator[tuple[int, int, Any, int]]:
    """For plaintext [start, end): (file offset, length, cipher, bytes to drop first) per segment piece."""
    for seg_start, size, iv in segs:
        lo, hi = max(start, seg_start), min(end, seg_start + size)
        if lo >= hi:
            continue
        local = lo - seg_start
        aligned = local - local % 16
        yield seg_start + aligned, hi - seg_start - aligned, encryptor(data_key, iv, aligned), local - aligned


async def encrypt_stream(chunks: AsyncIterator[bytes], cipher: Any) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield cipher.update(chunk)
