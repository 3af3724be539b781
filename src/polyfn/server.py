"""Runs one polyfn node in the foreground: logging, the HTTP server (uvicorn with the gateway's protocol), the
`server.json` announcement and signals. The node itself — every part and its start/stop order — is built by the
composition root, `node.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from polyfn import __version__
from polyfn.config import Settings
from polyfn.node import Node, load_or_create_admin_key

__all__ = ["Node", "load_or_create_admin_key", "serve"]

log = logging.getLogger("polyfn")


def _setup_logging() -> None:
    level = os.environ.get("POLYFN_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    else:
        handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("polyfn")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # uvicorn's own messages (a malformed request, an unsupported upgrade, an exception in a request) in the
    # same format: its servers are made with `log_config=None`, so nothing replaces this
    server_log = logging.getLogger("uvicorn")
    server_log.handlers[:] = [handler]
    server_log.setLevel(logging.WARNING)
    server_log.propagate = False


class _JsonFormatter(logging.Formatter):
    """One JSON object per line when stderr is not a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _http_protocol(settings: Settings, node: Node) -> Any:
    """uvicorn's httptools protocol with coalesced writes, the connection limits and early load shedding
    (gateway/http.py); plain "httptools" if missing."""
    try:
        from polyfn.gateway.http import CoalescingHttpToolsProtocol
    except ImportError:
        return "httptools"
    from polyfn.gateway.limits import HttpLimits

    def on_shed(function: str) -> None:
        if settings.metrics:
            node.metrics.shed(function, "http", "overloaded")

    from polyfn.gateway.h2c import H2cGate

    limits = HttpLimits.from_settings(settings)
    h2c = H2cGate(node.invoker, node.keys, limits.header_timeout, settings.max_payload)
    # the DynamoDB API and `/fn/` calls answered straight from the protocol (gateway/direct.py, gateway/fn_direct.py)
    return CoalescingHttpToolsProtocol.with_limits(limits, node.manager.shedding, on_shed, h2c, direct=node.db.direct,
                                                   fn_gateway=node.front.gateway)


def _ws_protocol() -> Any:
    """uvicorn's WebSocket protocol for the WebSocket APIs (wsapi/protocol.py); uvicorn's own if that is missing."""
    try:
        from polyfn.wsapi.protocol import LeanWebSocketProtocol
    except ImportError:
        return "auto"
    return LeanWebSocketProtocol


def _serve_relayed(node: Node, config: Any, server: Any, host: str, port: int) -> None:
    """`network: polyfn` instances reach this server's port through the relay (sandbox/relay.py): their
    connections are served here by the same protocol, not spliced to the port (TLS: spliced, as it comes)."""
    relay = node.reach.relay
    if relay is None or config.ssl is not None:
        return
    from polyfn.sandbox.relay import endpoints

    def protocol() -> Any:
        return config.http_protocol_class(config=config, server_state=server.server_state,
                                          app_state=server.lifespan.state)

    for upstream in endpoints([(host, port)])[0].values():
        relay.serve(upstream, protocol)


async def _open_store(url: str) -> None:
    from polyfn.store import Store

    await (await Store.open(url)).close()


def serve(host: str = "127.0.0.1", port: int = 8080, data_dir: str | Path | None = None,
          examples: bool = False, **overrides: Any) -> None:
    """Run a node in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    kwargs: dict[str, Any] = {"host": host, "port": port, **overrides}
    if data_dir is not None:
        kwargs["data_dir"] = Path(data_dir).expanduser()
    settings = Settings(**kwargs)
    _setup_logging()
    from polyfn.auth.nodekey import check as check_node_key

    # a node that does not hold the cluster's node key refuses to start (NodeKeyMismatch, one line in the CLI);
    # so does one whose code cannot run on the database's schema (SchemaMismatch: store/schema.py), checked
    # when the shared database is opened (and migrated) here, or the node's own SQLite file if it has one
    asyncio.run(check_node_key(settings.database_url or "", settings.data_dir / "node.key"))
    if settings.db_url.startswith("sqlite") and (settings.data_dir / "polyfn.db").exists():
        asyncio.run(_open_store(settings.db_url))
    from polyfn.gateway.limits import connections_for, raise_fd_limit

    before, after = raise_fd_limit(settings.http_max_connections)
    if after != before:
        log.info("open files limit raised from %d to %d (POLYFN_HTTP_MAX_CONNECTIONS=%d)", before, after,
                 settings.http_max_connections)
    settings.http_max_connections = connections_for(after, settings.http_max_connections)
    node = Node(settings, examples=examples)
    config = uvicorn.Config(
        node.asgi, host=settings.host, port=settings.port, loop="uvloop", http=_http_protocol(settings, node),
        lifespan="on", interface="asgi3", timeout_keep_alive=settings.http_keepalive_timeout,
        log_level="warning", log_config=None, access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout) or None,
        server_header=False, date_header=False,
        # Nothing on this server reads the client address (functions get X-Forwarded-For as sent), so
        # uvicorn's proxy-headers middleware would be a layer per request for nothing.
        proxy_headers=False, backlog=2048,
        ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key,
        # WebSocket APIs (wsapi/): websockets' sans-I/O protocol, lightened (wsapi/protocol.py); no permessage-deflate
        # (as API Gateway: its zlib state is ~50 KB a connection); messages over POLYFN_WS_MAX_MESSAGE close 1009
        ws=_ws_protocol(), ws_max_size=settings.ws_max_message, ws_per_message_deflate=False,
        ws_ping_interval=settings.ws_ping_interval or None, ws_ping_timeout=settings.ws_ping_interval or None,
    )
    server = uvicorn.Server(config)
    node.db.in_flight = server.server_state.tasks.__len__  # (the requests' tasks: a write alone commits at once)

    async def main() -> None:
        async def announce() -> None:
            while not server.started:
                if server.should_exit:
                    return
                await asyncio.sleep(0.02)
            sock = server.servers[0].sockets[0]
            bound = sock.getsockname()[1]
            _serve_relayed(node, config, server, settings.host, bound)
            url = f"{'https' if settings.tls_cert else 'http'}://{settings.host}:{bound}"
            info = settings.data_dir / "server.json"
            storage_url = node.storage.url if node.storage is not None else ""
            info.write_text(json.dumps({"url": url, "pid": os.getpid(), "version": __version__,
                                        "storage_url": storage_url}))
            print(f"polyfn {__version__} serving on {url}", flush=True)
            print(f"  functions:  {url}/fn/NAME        (HTTP trigger)", flush=True)
            print(f"  API:        {url}/v1/docs        (key: {settings.data_dir / 'admin.key'})", flush=True)
            print(f"  storage:    {storage_url or node.storage.error}  (S3 API; keys: polyfn storage keys create)",
                  flush=True)
            print(f"  data dir:   {settings.data_dir}", flush=True)
            if node.registry.functions:
                print(f"  deployed:   {', '.join(sorted(node.registry.functions))}", flush=True)
            print("  try:        curl -d hello " + url + "/fn/reverse", flush=True)

        def announced(task: asyncio.Task[None]) -> None:
            # a node that cannot finish starting (relay, announcement) says why and stops, rather than serve
            # without `server.json`, where the CLI and the operator would never find it
            if not task.cancelled() and task.exception() is not None:
                log.error("polyfn could not finish starting", exc_info=task.exception())
                server.should_exit = True

        t = asyncio.create_task(announce())
        t.add_done_callback(announced)
        # uvicorn re-raises the signal that stopped it once it is done; with a no-op Python handler in place
        # that re-raise is harmless, so our clean-up below runs and the exit status is 0 after a drain.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        try:
            await server.serve()
        finally:
            t.cancel()
            with contextlib.suppress(OSError):
                (settings.data_dir / "server.json").unlink()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
