"""How a node builds the app platform's identity service and its client face from what it already has."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyfn.apps.database import DatabaseFace
from polyfn.apps.firebase import FirebaseFace
from polyfn.apps.http import AppsFace
from polyfn.apps.service import AppService
from polyfn.apps.storage import StorageFace
from polyfn.apps.store import AppStore
from polyfn.apps.tokens import TokenSigner
from polyfn.bundled import bundle_dir
from polyfn.call import Call


def build(store: Any, derive_key: Any, limiter: Any, invoker: Any, storage: Any,
          keys: Any, database: Callable[[], Any] = lambda: None) -> tuple[AppService, AppsFace, FirebaseFace]:
    """Built complete, not started: the node's start list runs `service.start()`. `derive_key`: the node key's HKDF (SecretBox.derive); `invoker` runs custom sign-in functions and calls;
    `storage` (StorageService: its URL and region) and `keys` (the key ring: each app's own storage key) serve
    the file face; `database()` is the node's wx.cloud database API once it runs (the database face)."""

    async def call_function(name: str, payload: bytes) -> tuple[int, bytes]:
        out = await invoker.call(Call(name, "event", "signin", body=payload, content_type="application/json"))
        return out.status, out.body

    service = AppService(AppStore(store), TokenSigner(derive_key), limiter, call_function,
                         reload_interval=5.0 if store.engine.dialect.name != "sqlite" else 30.0)

    async def credentials(app_id: str) -> tuple[str, str]:
        app = service.app(app_id)  # (a key of the app's namespace: its bucket is that namespace's)
        owner = app.owner if app is not None else f"app:{app_id}"
        key, secret = await keys.for_function(owner, f"app {app_id!r}: its users' file grants")
        return key.id, secret

    files = StorageFace(lambda: storage.url, storage.settings.storage_region, credentials)
    # the client SDK's files (clients/js/src in the repository, bundled in a wheel), served at /sdk/
    face = AppsFace(service, invoker, bundle_dir("sdk"), extra={**files.routes(), **DatabaseFace(database).routes()})
    face.closers.append(files.close)
    return service, face, FirebaseFace(service, invoker)
