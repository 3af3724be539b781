"""Builds one polyfn node and runs it: stores, instance manager, registry, invoker, gateway, API.

Shutdown happens in a written order, each step bounded (see `Node.stop`): stop accepting invocations →
let in-flight invocations finish (drain_timeout) → stop instances and the zygote → flush activation
records → close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from polyfn import __version__
from polyfn.api.compat.stepfunctions import is_target as _sfn_target
from polyfn.apps.firebase import AUTH_PREFIXES
from polyfn.bundled import bundle_dir
from polyfn.config import Settings
from polyfn.deploy import archive
from polyfn.deploy.service import Deployer
from polyfn.gateway.limits import body_limit, limit_body
from polyfn.invoker import Invoker
from polyfn.model import Revision
from polyfn.observe.metrics import Metrics
from polyfn.observe.recorder import ActivationRecorder
from polyfn.queue.dispatcher import AsyncQueue
from polyfn.scheduler.manager import InstanceManager
from polyfn.scheduler.pool import Pool
from polyfn.scheduler.registry import FunctionRegistry
from polyfn.triggers.manager import TriggerManager

#: trigger kinds whose deliveries are async-queue jobs (`Job.trigger` is the kind)
QUEUED_TRIGGER_KINDS = frozenset({"cron", "events", "storage"})

log = logging.getLogger("polyfn")



def load_or_create_admin_key(data_dir: Path) -> str:
    """The admin API key lives in `<data dir>/admin.key` (0600), made at first start."""
    path = data_dir / "admin.key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    key = "pfk_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


class Node:
    def __init__(self, settings: Settings, examples: bool = False):
        self.settings = settings
        self.examples = examples
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.data_dir, 0o700)
        self.admin_key = load_or_create_admin_key(settings.data_dir)
        self.store: Any = None
        from polyfn.auth.keys import KeyRing
        from polyfn.auth.ratelimit import Limiter
        from polyfn.auth.secrets import SecretBox

        self.keys: KeyRing | None = None  # scoped API keys, loaded at start
        self.limiter = Limiter()  # token buckets per key and per function
        self.secret_box = SecretBox(settings.data_dir / "node.key")
        self.manager = InstanceManager(settings)
        self.registry = FunctionRegistry(self.manager, settings.drain_timeout)
        self.metrics = Metrics(lambda: list(self.manager.pools), settings.memory_budget_mb)
        self.manager.metrics = self.metrics
        self.recorder: ActivationRecorder = None  # type: ignore[assignment]
        self.invoker: Invoker = None  # type: ignore[assignment]
        self.deployer: Deployer = None  # type: ignore[assignment]
        self.artifacts: Any = None  # deploy.artifacts.S3Artifacts when code is shared with other nodes
        self.sync: Any = None  # scheduler.sync.ClusterSync when other nodes deploy to the same database
        self.otlp: Any = None
        self.storage: Any = None  # polyfn.storage.service.StorageService
        self.db: Any = None  # polyfn.db.service.DbService
        self.queue: AsyncQueue = None  # type: ignore[assignment]
        self.triggers: TriggerManager = None  # type: ignore[assignment]
        self._cleanup: set[asyncio.Task[None]] = set()
        self.relay: Any = None  # sandbox.relay.NetRelay, for `network: polyfn`
        self.workflows: Any = None  # workflows.service.WorkflowService; its Step Functions face: self.sfn_api
        self.sfn_api: Any = None
        self.apps: Any = None  # polyfn.apps.service.AppService: apps, their users, tokens
        self._apps_face: Any = None  # polyfn.apps.http.AppsFace: /app/{env}/… and /sdk/…
        self._firebase: Any = None  # polyfn.apps.firebase.FirebaseFace: Firebase's auth and callable URLs
        self.sites: Any = None  # polyfn.sites.Sites: static sites at /sites/NAME/
        self._sts: Any = None  # polyfn.api.compat.sts.StsApi: AssumeRole for temporary storage credentials
        from polyfn.api.app import build_api
        from polyfn.gateway import Gateway

        self.api = build_api(self)
        self._gateway: Gateway | None = None
        self._gateway_cls = Gateway

    async def start(self) -> None:
        from polyfn.store import Store

        s = self.settings
        for d in (s.code_dir, s.deps_dir, s.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.store = await Store.open(s.db_url)
        from polyfn.auth.keys import KeyRing
        from polyfn.store.security import SecurityStore

        self.security_store = SecurityStore(self.store)
        self.keys = KeyRing(self.security_store, self.secret_box)
        await self.keys.start(self.admin_key)
        from polyfn.auth.sts import Issuer

        self.keys.sts = Issuer(self.secret_box.derive, self.keys.get, time.time)
        self.manager.secret_source = self.read_secrets
        self.recorder = ActivationRecorder(self.store, retention_count=s.activation_retention_count,
                                           retention_age=s.activation_retention_age, store_max=s.log_store_max)
        self.recorder.start()
        self.otlp = None
        if s.otlp_endpoint:
            try:
                from polyfn.observe.otlp import OtlpExporter

                self.otlp = OtlpExporter(s.otlp_endpoint)
            except ImportError:
                log.warning("POLYFN_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                            "pip install 'polyfn[otel]'; traces are not exported")
            else:
                self.otlp.start()
                self.recorder.exporters.append(self.otlp)
                log.info("exporting activations as OTLP spans to %s", s.otlp_endpoint)
        self.metrics.start()
        self.invoker = Invoker(s, self.registry, self.recorder, self.metrics if s.metrics else None)
        self._gateway = self._gateway_cls(self.invoker)
        self._gateway.keys = self.keys
        self.invoker.limiter = self.limiter
        from polyfn.deploy import artifacts

        try:
            self.artifacts = artifacts.from_settings(s)
        except ValueError as e:
            raise SystemExit(f"polyfn: {e}") from None
        self.deployer = Deployer(s, self.store, self.registry, self.artifacts)
        if s.port:  # so a function's AWS SDK reaches this node's Lambda API (`boto3.client("lambda")`)
            host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
            self.manager.instance_env["AWS_ENDPOINT_URL_LAMBDA"] = f"http://{host}:{s.port}"
            self.manager.instance_env["AWS_ENDPOINT_URL_STS"] = f"http://{host}:{s.port}"  # AssumeRole (auth/sts.py)
        from polyfn.storage.service import StorageService

        self.storage = StorageService(s, self.store, self.keys)
        await self.storage.start()  # binds the port (instances learn the endpoint); answers from `serve` on
        from polyfn.apps import node as apps_node

        self.apps, self._apps_face, self._firebase = await apps_node.build(
            self.store, self.secret_box.derive, self.limiter, self.invoker, self.storage, self.keys,
            database=lambda: self.db.wx if self.db is not None else None)
        from polyfn.sites import Sites

        self.sites = Sites(self.store, s.data_dir / "sites")
        from polyfn.api.compat.sts import StsApi

        self._sts = StsApi(self.keys.sts, self.keys.signing_credentials)
        self.manager.env_hook = self.storage.function_env
        from polyfn.db.service import DbService  # the document database (its faces answer on this port)

        self.db = DbService(s, self.keys)
        await self.db.start()
        self.manager.instance_env.update(self.db.instance_env())
        await self._start_relay()
        await self.manager.start()
        if s.cluster_sync_interval:
            # A cluster node: its first pass activates every function it can run, other nodes' deploys
            # included (before the first request), then it follows them.
            from polyfn.scheduler.sync import ClusterSync

            self.sync = ClusterSync(self.store, self.registry, self.deployer, s.cluster_sync_interval)
            self.invoker.localise = self.deployer.localise
            try:
                await self.sync.sync_once()
            except Exception:  # the node still starts; the next passes try again
                log.exception("cluster sync at start failed")
            self.sync.start()
        else:
            for info in await self.store.list_functions():
                rev = await self.store.get_current_revision(info.name)
                if rev is not None and Path(rev.code_dir).is_dir():
                    self.registry.activate(rev)
        self.queue = AsyncQueue(s, self.invoker, self.registry)
        self.queue.revision_lookup = self.store.get_revision
        self.queue.on_failure = self._queued_trigger_failed
        await self.queue.start()
        self._gateway.queue = self.queue
        await self.storage.serve(self.queue.submit)  # storage events go into the durable queue
        if self.examples:
            await self.deploy_examples()
        self.triggers = TriggerManager(s, self.store, self.invoker, self.queue, self.registry, self.recorder,
                                       self.metrics)
        self.triggers.ctx.db = self.db.feed  # table change triggers read the database's change feed
        await self.triggers.start()
        await self._start_workflows()
        if self.sync is not None:
            self.sync.triggers = self.triggers
            if self.queue.jobs is not None:  # change notices over the queue's NATS connection
                jobs, me = self.queue.jobs, s.node_id
                self.store.on_change = lambda: jobs.announce_change(me)
                await jobs.on_changes(me, self.sync.poke)
        from polyfn.triggers import events as cloudevents

        self.queue.on_reply = lambda event, hops: cloudevents.route(self.triggers, event, hops)
        # Everything built so far lives as long as the node: move it out of the collector's way. Without
        # this, full collections under load scanned ~150k startup objects (~90 ms pauses, the p99).
        gc.collect()
        gc.freeze()
        log.info("polyfn %s ready: %d functions, isolation: %s", __version__, len(self.registry.functions),
                 self.manager.isolation)

    async def _start_workflows(self) -> None:
        """The workflow service (state machines, executions) on the store's database, running tasks through the
        invoker; its Step Functions face answers `POST /` requests with an `AWSStepFunctions.*` target."""
        from polyfn.api.compat.stepfunctions import StepFunctionsApi, lambda_function_name
        from polyfn.workflows.service import WorkflowService
        from polyfn.workflows.tasks import invoker_tasks

        self.workflows = WorkflowService(self.store.engine, invoker_tasks(self.invoker), owner=self.settings.node_id,
                                         function_name=lambda_function_name,
                                         write_lock=getattr(self.store, "_write_lock", None))  # SQLite: one writer
        await self.workflows.start()
        self.workflows.observe(self.metrics)
        self.sfn_api = StepFunctionsApi(self.workflows, lambda: self.keys)

    async def _start_relay(self) -> None:
        """`network: polyfn`: the relay that lets such instances reach this node's API and object store
        (and nothing else) from their own network namespace (sandbox/relay.py)."""
        from polyfn.sandbox.relay import LOOPBACK, NetRelay

        s = self.settings
        targets: dict[int, tuple[str, int]] = {}
        urls: dict[str, str] = {}
        endpoints = [(s.host, s.port)]
        if self.storage.url:
            host = s.storage_host or s.host
            endpoints.append((host, int(self.storage.url.rsplit(":", 1)[1])))
        for host, port in endpoints:
            if not port:
                continue
            real = LOOPBACK if host in ("0.0.0.0", "::", "") else host
            targets[port] = (real, port)
            shown = f"[{real}]" if ":" in real else real
            urls[f"http://{shown}:{port}"] = f"http://{LOOPBACK}:{port}"
        if not targets:
            return
        relay = NetRelay(s.run_dir / "netrelay.sock", targets)
        try:
            await relay.start()
        except OSError as e:
            log.warning("network relay unavailable (%s): `network: polyfn` functions will fail to start", e)
            return
        self.relay = relay
        self.manager.relay = relay
        self.manager.relay_urls = urls

    async def stop(self) -> None:
        """Shutdown in the documented order. Each step is guarded: a step that fails is logged and the
        later ones still run, so activation records are always flushed and the store always closed."""
        s = self.settings

        async def step(what: str, coro: Any) -> None:
            try:
                await coro
            except Exception:
                log.exception("shutdown: %s failed; continuing", what)

        if self.sync is not None:  # other nodes' deploys are no longer followed
            await step("stopping cluster sync", self.sync.stop())
        if self.triggers is not None:  # 0. triggers stop consuming (unacknowledged messages stay in the broker)
            await step("stopping triggers", self.triggers.stop())
        if self.workflows is not None:  # running tasks finish (bounded); the rest run again at the next start
            await step("stopping workflows", self.workflows.stop(s.drain_timeout))
        if self.storage is not None:  # storage port closed; in-flight writes finish and queue their events
            await step("stopping the object store", self.storage.stop())
        if self.queue is not None:  # running async invocations finish; queued ones stay on disk
            await step("stopping the async queue", self.queue.stop(s.drain_timeout))
        self.invoker.accepting = False  # 1. no new invocations
        await step("draining pools", self.registry.drain_all(s.drain_timeout))  # 2. in-flight invocations finish
        await step("stopping instances", self.manager.stop())  # 3. every instance and the zygote are gone
        if self.relay is not None:
            await step("stopping the network relay", self.relay.stop())
        await step("stopping metrics", self.metrics.stop())
        if self.apps is not None:
            await step("stopping the app service", self.apps.stop())
            await step("closing the app faces", self._apps_face.close())
        if self._cleanup:
            await asyncio.wait(list(self._cleanup), timeout=5)
        await step("flushing activations", self.recorder.stop())  # 4. records flushed (and handed to OTLP)
        if self.otlp is not None:
            await step("stopping the OTLP exporter", self.otlp.stop())
        if self.keys is not None:
            await step("saving API key use", self.keys.stop())  # last-used times of API keys
        if self.artifacts is not None:
            await step("closing the artifact store client", self.artifacts.close())
        if self.db is not None:
            await step("closing the document database", self.db.stop())
        await self.store.close()  # 5. store closed

    async def read_secrets(self, names: list[str]) -> dict[str, str]:
        """Decrypted values of `names` (all must exist), for an instance being started."""
        found = await self.security_store.get_secrets(names)
        missing = [n for n in names if n not in found]
        if missing:
            raise KeyError(", ".join(missing))
        return {n: self.secret_box.decrypt(v) for n, v in found.items()}

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Top-level ASGI app: `/fn/...` goes straight to the gateway, the rest to the API."""
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/fn/") and self._gateway is not None:
            await self._gateway(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/" and self.sfn_api is not None and _sfn_target(scope):
            await self.sfn_api(scope, receive, send)
        elif scope["type"] == "http" and path.startswith(("/app/", "/sdk/")) and self._apps_face is not None:
            await self._apps_face(scope, receive, send)
        elif scope["type"] == "http" and path.startswith("/sites/") and self.sites is not None:
            await self.sites(scope, receive, send)
        elif self.db is not None and (face := self.db.owns(scope)) is not None:
            await face(scope, receive, send)
        elif self._sts is not None and self._sts.owns(scope):
            await self._sts(scope, receive, send)
        elif scope["type"] == "http" and self._firebase is not None and (
                path.startswith(AUTH_PREFIXES) or self._firebase.callable_app(path) is not None):
            await self._firebase(scope, receive, send)
        elif scope["type"] == "http":  # bodies bounded as they arrive (gateway/limits.py)
            s = self.settings
            await limit_body(self.api, scope, receive, send, body_limit(scope["path"], s.max_payload, s.max_code_size))
        else:
            await self.api(scope, receive, send)

    def schedule_code_cleanup(self, name: str, revisions: list[Revision], pool: Pool | None) -> None:
        """After a delete: once the old pool has drained, remove the function's code directories."""

        async def cleanup() -> None:
            if pool is not None:
                while pool in self.manager.pools:
                    await asyncio.sleep(0.05)
            for rev in revisions:
                archive.remove_tree(Path(rev.code_dir))
            with contextlib.suppress(OSError):
                (self.settings.code_dir / name).rmdir()

        t = asyncio.ensure_future(cleanup())
        self._cleanup.add(t)
        t.add_done_callback(self._cleanup.discard)

    def _queued_trigger_failed(self, job: Any, reason: str) -> None:
        """A failed attempt of a delivery that runs through the async queue (cron ticks, routed CloudEvents,
        storage events; the broker/topic/log runners count their own deliveries' failures):
        polyfn_trigger_errors_total{kind=<the trigger kind>}."""
        if job.trigger in QUEUED_TRIGGER_KINDS:
            self.metrics.trigger_errors.inc(job.function, job.trigger, reason)

    async def deploy_examples(self) -> None:
        """Deploy every example under examples/seed and examples/native whose code changed since it was
        last deployed. A `polyfn.json` beside the code holds spec fields (e.g. the function's name)."""
        examples = bundle_dir("examples")
        dirs = [p for group in ("seed", "native") if examples and (examples / group).is_dir()
                for p in sorted((examples / group).iterdir()) if p.is_dir()]
        for d in dirs:
            files = {str(f.relative_to(d)): f.read_bytes() for f in d.rglob("*")
                     if f.is_file() and "__pycache__" not in f.parts and f.name != "README.md"}
            meta_file = d / "polyfn.json"
            fields = json.loads(meta_file.read_text()) if meta_file.exists() else {}
            files.pop("polyfn.json", None)
            fields.setdefault("name", d.name)
            current = await self.store.get_function(fields["name"])
            if current is not None and current.code_sha256 == archive.digest(files):
                continue
            try:
                await self.deployer.deploy(fields, files)
                log.info("deployed example %s", fields["name"])
            except Exception as e:
                log.warning("example %s not deployed: %s", d.name, e)


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

    return CoalescingHttpToolsProtocol.with_limits(HttpLimits.from_settings(settings), node.manager.shedding,
                                                   on_shed)


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

    # a node that does not hold the cluster's node key refuses to start (NodeKeyMismatch, one line in the CLI)
    asyncio.run(check_node_key(settings.database_url or "", settings.data_dir / "node.key"))
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
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        async def announce() -> None:
            while not server.started:
                if server.should_exit:
                    return
                await asyncio.sleep(0.02)
            sock = server.servers[0].sockets[0]
            bound = sock.getsockname()[1]
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

        t = asyncio.create_task(announce())
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
