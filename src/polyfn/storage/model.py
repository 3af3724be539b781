"""What the store keeps: object versions, buckets and their settings, and what a write must match.

Names and limits as S3 has them. An object's record travels in its file's trailer (`objfile`), a bucket's in
`.bucket` (`local`); both are plain data, encoded with short keys so old records stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polyfn.storage.errors import S3Error, invalid_argument

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10000
MAX_KEY_BYTES = 1024
NULL_VERSION = "null"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

#: An ACL grant: (grantee kind: "id" | "uri" | "email", who, permission).
Grant = tuple[str, str, str]


@dataclass(slots=True)
class ObjectInfo:
    """One version of an object (or a delete marker)."""

    key: str
    size: int
    etag: str  # hex MD5 (or `<md5>-<parts>` for multipart), without quotes
    last_modified: float
    content_type: str = "binary/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* without the prefix
    headers: dict[str, str] = field(default_factory=dict)  # cache-control, content-disposition, …
    checksums: dict[str, str] = field(default_factory=dict)  # {"crc32": base64, …}
    version_id: str = NULL_VERSION
    seq: int = 0  # orders the versions of a key (newest highest)
    delete_marker: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    acl: list[Grant] = field(default_factory=list)  # beside the owner's FULL_CONTROL
    parts: list[int] = field(default_factory=list)  # part sizes of a multipart object
    checksum_type: str = ""  # COMPOSITE | FULL_OBJECT when `checksums` came from a multipart upload
    part_checksums: list[str] = field(default_factory=list)
    sse: dict[str, Any] = field(default_factory=dict)  # see `sse.py`: kind, wrapped key, segment IVs
    lock_mode: str = ""  # GOVERNANCE | COMPLIANCE
    lock_until: float = 0.0
    legal_hold: bool = False
    storage_class: str = "STANDARD"

    def to_meta(self) -> dict[str, Any]:
        m: dict[str, Any] = {"key": self.key, "size": self.size, "etag": self.etag, "mtime": self.last_modified,
                             "ct": self.content_type, "meta": self.metadata, "h": self.headers, "ck": self.checksums,
                             "v": self.version_id, "seq": self.seq}
        for name, value in (("dm", self.delete_marker), ("tags", self.tags), ("acl", self.acl),
                            ("parts", self.parts), ("ckt", self.checksum_type), ("pck", self.part_checksums),
                            ("sse", self.sse), ("lm", self.lock_mode), ("lu", self.lock_until),
                            ("lh", self.legal_hold)):
            if value:
                m[name] = value
        if self.storage_class != "STANDARD":
            m["sc"] = self.storage_class
        return m

    @classmethod
    def from_meta(cls, m: dict[str, Any]) -> ObjectInfo:
        return cls(m["key"], m["size"], m["etag"], m["mtime"], m["ct"], m["meta"], m["h"], m.get("ck", {}),
                   m.get("v", NULL_VERSION), m.get("seq", 0), m.get("dm", False), m.get("tags", {}),
                   [tuple(g) for g in m.get("acl", [])], m.get("parts", []), m.get("ckt", ""), m.get("pck", []),
                   m.get("sse", {}), m.get("lm", ""), m.get("lu", 0.0), m.get("lh", False), m.get("sc", "STANDARD"))


#: Decides at commit time whether a write may replace the current version (conditional writes): raises to refuse.
Precondition = Callable[[ObjectInfo | None], None]


@dataclass(slots=True)
class BucketInfo:
    name: str
    created: float
    acl: list[Grant] = field(default_factory=list)  # beside the owner's FULL_CONTROL; AllUsers READ = public
    versioning: str = ""  # "" (never enabled) | Enabled | Suspended
    tags: dict[str, str] = field(default_factory=dict)
    cors: list[dict[str, Any]] = field(default_factory=list)  # `cors.parse_rules`
    policy: str = ""
    lock: dict[str, Any] = field(default_factory=dict)  # {"enabled": True, "mode": …, "days"|"years": n}
    encryption: str = ""  # default SSE: "" | AES256 | aws:kms
    kms_key_id: str = ""
    ownership: str = ""  # BucketOwnerEnforced | BucketOwnerPreferred | ObjectWriter
    public_access_block: dict[str, bool] = field(default_factory=dict)
    namespace: str = "default"  # the namespace that owns it (tenancy.py); recorded only when not `default`

    @property
    def public(self) -> bool:
        """Anyone may read (list) it: the AllUsers group has READ."""
        return any(g[1].endswith("/AllUsers") and g[2] in ("READ", "FULL_CONTROL") for g in self.acl)

    def to_record(self) -> dict[str, Any]:
        return {"created": self.created, "acl": self.acl, "versioning": self.versioning, "tags": self.tags,
                "cors": self.cors, "policy": self.policy, "lock": self.lock, "encryption": self.encryption,
                "ownership": self.ownership, "pab": self.public_access_block, "kms": self.kms_key_id,
                **({"ns": self.namespace} if self.namespace != "default" else {})}

    @classmethod
    def from_record(cls, name: str, rec: dict[str, Any]) -> BucketInfo:
        acl = [tuple(g) for g in rec["acl"]] if "acl" in rec else [("id", "polyfn", "FULL_CONTROL")]
        if rec.get("public") and "acl" not in rec:  # records written before ACLs: a public flag
            acl = [("uri", ALL_USERS, "READ"), ("id", "polyfn", "FULL_CONTROL")]
        return cls(name, rec["created"], acl, versioning=rec.get("versioning", ""), tags=rec.get("tags", {}),
                   cors=rec.get("cors", []), policy=rec.get("policy", ""), lock=rec.get("lock", {}),
                   encryption=rec.get("encryption", ""), kms_key_id=rec.get("kms", ""),
                   ownership=rec.get("ownership", ""), public_access_block=rec.get("pab", {}),
                   namespace=rec.get("ns", "default"))


ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@dataclass(slots=True)
class PutChecks:
    """What the written bytes must match (each optional)."""

    md5_b64: str | None = None  # Content-MD5
    sha256_hex: str | None = None  # x-amz-content-sha256 when the payload is signed
    length: int | None = None  # Content-Length / x-amz-decoded-content-length
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm → base64 value the client sent
    compute: tuple[str, ...] = ()  # algorithms to compute and keep even though the client sent no value
    trailers: dict[str, str] | None = None  # aws-chunked trailers, filled once the body is read


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
