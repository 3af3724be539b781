"""The document database as one node service, built from narrow dependencies: where the tables live (the
settings' data dir or PostgreSQL URL), the key store that verifies callers, and the queue that takes change
records. It contributes requests it owns on the main port (the DynamoDB face: `X-Amz-Target:
DynamoDB_20120810.*`; the wx.cloud face: `/wx/database/…`), start/stop, the instances' environment
(`AWS_ENDPOINT_URL_DYNAMODB`, so `boto3.client("dynamodb")` in a function needs no arguments) and health.

Embedded, the tables live in `<data dir>/tables.db` (SQLite, WAL), apart from the metadata store, so item
traffic never queues behind deploys and activation records; with a PostgreSQL `database_url` (a cluster) they
live in that database beside the metadata, shared by every node.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from polyfn.db.access import Grants
from polyfn.db.changes import ChangeFeed, Sweeper
from polyfn.db.collections import Collections
from polyfn.db.control import Control
from polyfn.db.core import Database
from polyfn.db.dynamodb_api import PREFIX, DynamoDBApi
from polyfn.db.watch import Watcher
from polyfn.db.wx_api import WxDatabaseApi

log = logging.getLogger("polyfn.db")

DYNAMODB_TARGET = PREFIX.encode()


def storage_url(settings: Any) -> str:
    url = settings.database_url or ""
    if url.startswith("postgresql"):
        return str(url)
    return str(settings.data_dir / "tables.db")


class DbService:
    def __init__(self, settings: Any, keys: Any):
        self.settings = settings
        self.keys = keys
        self.db: Database | None = None
        self.grants: Grants | None = None
        self.dynamodb: DynamoDBApi | None = None
        self.feed: ChangeFeed | None = None
        self.sweeper: Sweeper | None = None
        self.wx: WxDatabaseApi | None = None  # the wx.cloud face; `wx.run(caller, action, body)` for the app platform
        self.extra: list[Any] = []  # more faces (raw ASGI apps with `owns(scope)`), added at start
        #: the number of requests in flight on the node's HTTP server (its tasks: given by the composition root
        #: before start), so that a write made alone commits at once (`Storage.alone`); None: always grouped
        self.in_flight: Callable[[], int] | None = None

    async def start(self) -> None:
        self.db = await Database.open(storage_url(self.settings), self.settings.storage_region)
        if (in_flight := self.in_flight) is not None:
            self.db.storage.alone = lambda: in_flight() <= 1  # (the writing request's own task counts)
        self.grants = Grants(self.db.storage)
        await self.grants.load()
        self.dynamodb = DynamoDBApi(self.db, self.keys, self.grants)
        self.extra.append(Control(self.grants, self.keys))
        self.feed = ChangeFeed(self.db)
        collections = Collections(self.db, self.grants)
        self.wx = WxDatabaseApi(collections, self.keys, Watcher(collections, self.feed))
        self.extra.append(self.wx)
        self.sweeper = Sweeper(self.db, self.settings.db_sweep_interval)
        self.sweeper.start()

    async def stop(self) -> None:
        if self.sweeper is not None:
            await self.sweeper.stop()
        if self.db is not None:
            await self.db.close()

    async def forget_namespace(self, namespace: str) -> dict[str, Any]:
        """A deleted namespace's tables go, with their items, and its functions' grants."""
        gone: list[str] = []
        if getattr(self, "db", None) is None:
            return {"tables": gone}
        while names := (await self.db.list_tables(namespace, {}))["TableNames"]:
            for name in names:
                with contextlib.suppress(Exception):  # (a protected table is unprotected first)
                    await self.db.update_table(namespace, {"TableName": name, "DeletionProtectionEnabled": False})
                await self.db.delete_table(namespace, {"TableName": name})
                gone.append(name)
        for g in await self.grants.list(namespace):
            await self.grants.revoke(namespace, g["function"])
        return {"tables": gone}

    def owns(self, scope: dict[str, Any]) -> Any:
        """The face that answers this request, or None."""
        if self.dynamodb is not None and self.dynamodb.owns(scope):
            return self.dynamodb
        for face in self.extra:
            if face.owns(scope):
                return face
        return None

    def direct(self, method: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
        """The face that answers a `POST /` with these headers straight from the HTTP protocol (gateway/direct.py:
        the DynamoDB API's), or None."""
        if method != b"POST" or self.dynamodb is None:
            return None
        for k, v in headers:
            if k == b"x-amz-target":
                return self.dynamodb if v.startswith(DYNAMODB_TARGET) else None
        return None

    def instance_env(self) -> dict[str, str]:
        s = self.settings
        if not s.port:
            return {}
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        scheme = "https" if s.tls_cert else "http"
        return {"AWS_ENDPOINT_URL_DYNAMODB": f"{scheme}://{host}:{s.port}"}

    def health(self) -> dict[str, Any]:
        return {"engine": self.db.storage.dialect if self.db is not None else "stopped"}
