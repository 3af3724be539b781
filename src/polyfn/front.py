"""The node's front door: the one ASGI app uvicorn serves (`Node.asgi`). Each request goes to its face by its
path (the `/fn/` gateway first, WebSockets, the app platform, sites, the document database, STS, Firebase,
Step Functions' `POST /`, and the rest to the control API); `/healthz` and the ASGI lifespan are answered here,
so the node answers before the control API (built on first use, in a thread after start) exists."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from polyfn.api.compat.stepfunctions import is_target as _sfn_target
from polyfn.apps.firebase import AUTH_PREFIXES
from polyfn.config import Settings
from polyfn.gateway.limits import body_limit, limit_body

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class FrontDoor:
    """`build_api(lifespan)` makes the control API with the console; `start`/`stop` are the node's;
    `health_of` what /healthz reports on (registry, cluster sync, queue); the rest are the faces."""

    def __init__(self, settings: Settings, build_api: Callable[[Any], Any], start: Callable[[], Awaitable[None]],
                 stop: Callable[[], Awaitable[None]], health_of: tuple[Any, Any, Any], *, gateway: App,
                 websockets: App, ws_passthrough: App, ws_management: App, sfn_api: App, apps_face: App,
                 sites: App, db: Any, sts: Any, firebase: Any):
        self.settings = settings
        self._build_api = build_api
        self._start, self._stop = start, stop
        self._health_of = health_of
        self.gateway, self.websockets, self.ws_passthrough, self.ws_management = (gateway, websockets, ws_passthrough,
                                                                                  ws_management)
        self.sfn_api, self.apps_face, self.sites, self.db, self.sts, self.firebase = (sfn_api, apps_face, sites, db,
                                                                                      sts, firebase)
        self._api: Any = None  # the control API and the console: `api`, built on first use
        self._api_lock = threading.Lock()
        self._api_built: asyncio.Future[Any] | None = None

    @property
    def api(self) -> Any:
        """The control API with the console mounted (FastAPI). Built on first use, once: building its routes
        (pydantic schemas for every parameter) takes about a second of CPU, which `serve` spends in a thread
        after the node answers (`__call__`, `_serve_lifespan`) rather than before /healthz."""
        with self._api_lock:
            if self._api is None:
                self._api = self._build_api(self.lifespan)
            return self._api

    def _build_api_in_background(self) -> asyncio.Future[Any]:
        if self._api_built is None:
            self._api_built = asyncio.get_running_loop().run_in_executor(None, lambda: self.api)
        return self._api_built

    async def _api_app(self) -> Any:
        """The API app, waiting for the background build if it is under way."""
        if self._api is not None:
            return self._api
        return await asyncio.shield(self._build_api_in_background())

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        await self._start()
        try:
            yield
        finally:
            await self._stop()

    async def _serve_lifespan(self, receive: Any, send: Any) -> None:
        """ASGI lifespan, answered here rather than by the API app (built after the node serves): start →
        the node's start list, then the API built in a thread; shutdown → `stop`."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except BaseException as e:
                    await send({"type": "lifespan.startup.failed", "message": f"{type(e).__name__}: {e}"})
                    raise
                await send({"type": "lifespan.startup.complete"})
                self._build_api_in_background()
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self._stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _health(self, send: Any) -> None:
        from polyfn.api.health import health

        body = json.dumps(health(*self._health_of)).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Top-level ASGI app: `/fn/...` goes straight to the gateway, the rest to the API."""
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/fn/"):
            await self.gateway(scope, receive, send)
        elif scope["type"] == "websocket" and path.startswith("/ws/"):
            await self.websockets(scope, receive, send)
        elif scope["type"] == "websocket" and path.startswith("/fn/"):  # to an http-runtime program's own server
            await self.ws_passthrough(scope, receive, send)
        elif scope["type"] == "http" and path.startswith(("/ws/", "/@connections/")):
            await self.ws_management(scope, receive, send)
        elif scope["type"] == "http" and path == "/healthz" and scope["method"] == "GET":
            await self._health(send)
        elif scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"] == "/" and _sfn_target(scope):
            await self.sfn_api(scope, receive, send)
        elif scope["type"] == "http" and path.startswith(("/app/", "/sdk/")):
            await self.apps_face(scope, receive, send)
        elif scope["type"] == "http" and path.startswith("/sites/"):
            await self.sites(scope, receive, send)
        elif (face := self.db.owns(scope)) is not None:
            await face(scope, receive, send)
        elif self.sts.owns(scope):
            await self.sts(scope, receive, send)
        elif scope["type"] == "http" and (
                path.startswith(AUTH_PREFIXES) or self.firebase.callable_app(path) is not None):
            await self.firebase(scope, receive, send)
        elif scope["type"] == "http":  # bodies bounded as they arrive (gateway/limits.py)
            s = self.settings
            api = self._api or await self._api_app()
            await limit_body(api, scope, receive, send, body_limit(scope["path"], s.max_payload, s.max_code_size))
        else:
            await (self._api or await self._api_app())(scope, receive, send)
