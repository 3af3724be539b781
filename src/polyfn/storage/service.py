"""The node's object store: backend + triggers + the S3 API on its own port (keys: the node's key ring).

The S3 API runs as a second uvicorn server inside the node's event loop. `start` binds the socket itself
(so a busy port is reported and the rest of the node keeps running, and instances started from then on know
the endpoint); `serve` starts answering once the async queue runs, because a write that matches a trigger
is acknowledged only after its event is committed to the queue (connections made in between wait in the
listen backlog). `Node.stop` calls `stop` before stopping the queue: stop accepting storage requests and
let in-flight ones finish (bounded), so their events are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from polyfn.config import Settings
from polyfn.storage import sse
from polyfn.storage.api import S3App
from polyfn.storage.errors import S3Error
from polyfn.storage.local import LocalBackend
from polyfn.storage.notifications import Notifications

log = logging.getLogger("polyfn.storage")


class StorageService:
    def __init__(self, settings: Settings, store: Any, keys: Any) -> None:
        s = settings
        self.settings = s
        self.keys = keys  # polyfn.auth.keys.KeyRing: the node's one key store
        root = s.storage_dir
        self.backend = LocalBackend(root, s.storage_max_object_size, s.storage_fsync, _sse_keys(keys))
        self.notifications = Notifications(store, s.storage_region)
        self.notifications.bucket_exists = self.bucket_exists
        proxy = None
        if s.storage_backend == "s3":
            from polyfn.storage.proxy import UpstreamProxy

            proxy = UpstreamProxy(s, root)
        self.proxy = proxy
        self.app = S3App(self.backend, self.keys.signing_credentials, self.notifications, s.storage_region,
                         s.storage_max_object_size, proxy=proxy, ensure_key=self.refresh,
                         domains=s.storage_domains)
        self.url = ""
        self.error = ""
        self._server: Any = None
        self._sock: socket.socket | None = None
        self._triggers_at = 0.0

    def bucket_exists(self, bucket: str) -> bool:
        """Whether `bucket` exists here (with an upstream S3 the buckets live there: assumed to)."""
        if self.proxy is not None:
            return True
        try:
            self.backend.bucket(bucket)
        except S3Error:
            return False
        return True

    async def refresh(self, akid: str, now: float) -> None:
        """Keep keys and triggers in step with the database when nodes share it (cluster): unknown keys are
        looked up at once, everything is re-read when older than 30 s."""
        await self.keys.ensure(akid, now)
        if now - self._triggers_at > 30.0:
            self._triggers_at = now
            await self.notifications.load()

    @property
    def enabled(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        s = self.settings
        root = s.storage_dir
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        await asyncio.to_thread(self.backend.open)
        await self.notifications.load()
        if self.proxy is not None:
            await self.proxy.start()
        if not s.storage_port:
            self.error = "disabled (--storage-port 0)"
            return
        host = s.storage_host or s.host
        try:
            sock = _bind(host, s.storage_port)
        except OSError as e:
            self.error = f"cannot listen on {host}:{s.storage_port} ({e.strerror}); pass --storage-port"
            log.error("object storage disabled: %s", self.error)
            return
        self._sock = sock
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{shown}:{sock.getsockname()[1]}"

    async def serve(self, enqueue: Any) -> None:
        """Start answering S3 requests on the socket bound by `start`; `enqueue` is `AsyncQueue.enqueue`,
        which takes the storage events."""
        self.notifications.enqueue = enqueue
        if self._sock is None:
            return
        import uvicorn

        s = self.settings
        config = uvicorn.Config(self.app, loop="none", http="httptools", lifespan="off", interface="asgi3",
                                log_level="warning", log_config=None, access_log=False, server_header=False, date_header=False,
                                timeout_graceful_shutdown=int(s.drain_timeout) or None, backlog=2048)
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._sock])
        self._server = server
        log.info("object storage (%s backend) on %s", s.storage_backend, self.url)

    async def stop_accepting(self) -> None:
        """Close the storage port and let in-flight requests finish (bounded by the drain timeout)."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                await server.shutdown(sockets=[self._sock])
        elif self._sock is not None:  # bound but never served (the node stopped during start)
            self._sock.close()
        self._sock = None

    async def stop(self) -> None:
        await self.stop_accepting()
        if self.proxy is not None:
            await self.proxy.stop()

    def usage(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects and bytes of each bucket (of `namespace`), every version counted: the counters kept on each
        write (storage/use.py), else a walk of the bucket (blocking: run in a thread)."""
        out = []
        use = self.backend.use
        for b in self.backend.list_buckets():
            if namespace is not None and b.namespace != namespace:
                continue
            objects, size = use.bucket_use(b.name) if use is not None else self.backend.usage(b.name)
            out.append({"bucket": b.name, "objects": objects, "bytes": size})
        return out

    async def forget_namespace(self, namespace: str) -> dict[str, Any]:
        """A deleted namespace's buckets go, with their objects (local backend: the proxy's hold no owner)."""
        gone = []
        if self.proxy is None:
            for b in self.backend.list_buckets():
                if b.namespace == namespace:
                    await asyncio.to_thread(self.backend.destroy_bucket, b.name)
                    gone.append(b.name)
        return {"buckets": gone}

    async def forget_function(self, function: str) -> None:
        """A deleted function loses its storage triggers and its access key."""
        await self.notifications.remove_function(function)
        await self.keys.forget_function(function)

    async def function_env(self, function: str) -> dict[str, str]:
        """What an instance of `function` gets so that boto3 reaches this node unedited: its own key from the
        node's key store (scope `invoke`, owned by the function: S3 writes are attributed to it, and the
        Lambda API at AWS_ENDPOINT_URL_LAMBDA accepts it) and, when the store is serving, its endpoint."""
        key, secret = await self.keys.for_function(function)
        env = {"AWS_ACCESS_KEY_ID": key.id, "AWS_SECRET_ACCESS_KEY": secret,
               "AWS_REGION": self.settings.storage_region, "AWS_DEFAULT_REGION": self.settings.storage_region}
        if self.url:
            env["AWS_ENDPOINT_URL_S3"] = self.url
        return env


def _sse_keys(keys: Any) -> sse.Keys | None:
    """SSE-S3's key-encryption key, derived from the node key that also encrypts the key ring's secrets
    (made on first use, like theirs). None when the key ring has no node key (then SSE is refused)."""
    box = getattr(keys, "box", None)
    if box is None:
        return None
    box.encrypt("")  # makes <data dir>/node.key when it does not exist yet
    return sse.Keys(sse.node_storage_key(box.key_path.read_bytes()))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock
