"""What the S3 operations (`*_ops.py`, `object_meta.py`, `bucket_config.py`, `post_upload.py`) use of the S3 app
that routes to them (`api.S3App`): the backend, the region, the clock, limits, authentication and change events.

The operations take it as a protocol, so they depend on this narrow surface and the route table (routes.py) can
name them without the operations importing the app that imports the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from polyfn.auth.sigv4 import Lookup
    from polyfn.storage.local import LocalBackend
    from polyfn.storage.model import BucketInfo, ObjectInfo
    from polyfn.storage.sigv4 import Identity


class S3Context(Protocol):
    backend: LocalBackend
    region: str
    max_object_size: int
    clock: Callable[[], float]
    lookup: Lookup  # access key id → its secret and identity (SigV4)
    notifications: Any  # storage trigger deliveries (notifications.py), None without triggers

    def may_read_anonymously(self, bucket: BucketInfo, info: ObjectInfo) -> bool: ...

    def check_loop(self, bucket: str, key: str, event: str, ident: Identity | None) -> None:
        """Refuse a write by a function that its own storage trigger would call again."""

    def emit(self, event: str, bucket: str, key: str, info: ObjectInfo | None, ip: str) -> Awaitable[None]:
        """Queue the change's trigger deliveries (durably): after the change, before the answer."""
