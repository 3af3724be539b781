"""The composition root: one polyfn node, every part built complete from `Settings`, in dependency order.

`Node(settings)` constructs everything (no part is a placeholder filled in later — but for the control API
and console, a FastAPI app whose ~180 routes take about a second of CPU to build: `Node.api` builds them on
first use, in a thread once the node serves, so `/healthz` and `/fn/…` answer first) and writes one ordered
start list (`lifecycle.Lifecycle`). `start()` runs it; `stop()` stops what started, last first — also when a
start fails halfway. The faces (the API, the console, the vendor APIs, the app platform) receive the narrow
services they use, declared in `services.py`, never the node.

Shutdown order (the start list reversed): cluster sync → workflows → triggers → the object store's port →
the async queue (running jobs finish) → no new invocations, pools drain (drain_timeout) → instances and the
zygote → network relay → document database → app service → object store → metrics → activation records
flushed (then handed to OTLP) → API key use saved → artifact store client → store closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from polyfn import __version__
from polyfn.api.compat.openwhisk_events import WhiskOwned
from polyfn.api.compat.stepfunctions import StepFunctionsApi, lambda_function_name
from polyfn.api.compat.sts import StsApi
from polyfn.apps import node as apps_node
from polyfn.auth.keys import KeyRing
from polyfn.auth.ratelimit import Limiter
from polyfn.auth.secrets import SecretBox, SecretValues
from polyfn.auth.sts import Issuer
from polyfn.config import Settings
from polyfn.db.service import DbService
from polyfn.deploy import artifacts
from polyfn.deploy.examples import deploy_examples
from polyfn.deploy.service import Deployer
from polyfn.front import FrontDoor
from polyfn.gateway import Gateway
from polyfn.instances.manager import InstanceManager
from polyfn.invoker import Invoker
from polyfn.lifecycle import Lifecycle
from polyfn.loops import cancelled
from polyfn.namespace_use import NamespaceUse
from polyfn.namespaces import Namespaces, TenancyOps
from polyfn.observe.history import replay_last_hour
from polyfn.observe.metrics import Metrics
from polyfn.observe.recorder import ActivationRecorder
from polyfn.observe.usage import UsageMeter
from polyfn.queue.dispatcher import AsyncQueue
from polyfn.quota_share import ClusterUse
from polyfn.quotas import QuotaGuard
from polyfn.reach import InstanceReach
from polyfn.removal import FunctionRemoval
from polyfn.sandbox.linux import collapse_heap
from polyfn.scheduler.registry import FunctionRegistry
from polyfn.scheduler.sync import ClusterSync
from polyfn.scheduler.ticker import Ticker
from polyfn.sites import Sites
from polyfn.storage.service import StorageService
from polyfn.store import Store
from polyfn.store.compat import CompatStore
from polyfn.store.namespaces import NamespaceStore
from polyfn.store.security import SecurityStore
from polyfn.triggers import events as cloudevents
from polyfn.triggers.manager import TriggerManager
from polyfn.workflows.owned import WorkflowsOwned
from polyfn.workflows.service import WorkflowService
from polyfn.workflows.tasks import invoker_tasks
from polyfn.wsapi.cluster import Forwarder
from polyfn.wsapi.connections import Connections
from polyfn.wsapi.endpoint import WebSocketEndpoint
from polyfn.wsapi.management import ManagementApi
from polyfn.wsapi.passthrough import Passthrough

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


def _otlp(endpoint: str) -> Any:
    """The OTLP span exporter, or None (with a warning) when OpenTelemetry is not installed."""
    if not endpoint:
        return None
    try:
        from polyfn.observe.otlp import OtlpExporter
    except ImportError:
        log.warning("POLYFN_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                    "pip install 'polyfn[otel]'; traces are not exported")
        return None
    return OtlpExporter(endpoint)


class Node:
    """Every part of a node, built complete; `start`/`stop` run the one ordered list of `lifecycle`."""

    def __init__(self, settings: Settings, examples: bool = False):
        s = self.settings = settings
        self.examples = examples
        s.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(s.data_dir, 0o700)
        self.admin_key = load_or_create_admin_key(s.data_dir)
        self._background: list[asyncio.Task[None]] = []  # the examples' deploys, the charts' history replay

        # the ground: the metadata store (opened at start), secrets, keys, rate limits
        self.store = Store.connect(s.db_url)
        self.secret_box = SecretBox(s.data_dir / "node.key")
        self.security_store = SecurityStore(self.store)
        self.keys = KeyRing(self.security_store, self.secret_box)
        self.keys.sts = Issuer(self.secret_box.derive, self.keys.get, time.time)
        self.limiter = Limiter()  # token buckets per key and per function
        try:
            self.artifacts = artifacts.from_settings(s)  # S3Artifacts when code is shared with other nodes
        except ValueError as e:
            raise SystemExit(f"polyfn: {e}") from None

        # instances, the functions they run, and the record of every call
        self.manager = InstanceManager(s)
        self.registry = FunctionRegistry(self.manager, s.drain_timeout)
        self.ticker = Ticker(s, self.manager.awake)  # the pools' reaper and autoscaler
        self.metrics = Metrics(lambda: list(self.manager.pools), s.memory_budget_mb)
        self.manager.metrics = self.metrics
        # setting and deleting secrets, per namespace (/v1/secrets, OpenFaaS's /system/secrets); read at a start
        self.secret_values = SecretValues(self.security_store, self.secret_box, self.manager.secret_changed)
        self.manager.specs.secret_source = self.secret_values.read
        self.otlp = _otlp(s.otlp_endpoint)
        self.recorder = ActivationRecorder(self.store, retention_count=s.activation_retention_count,
                                           retention_age=s.activation_retention_age, store_max=s.log_store_max)
        if self.otlp is not None:
            self.recorder.exporters.append(self.otlp)
        if s.usage_metering:  # sums each stored batch of records per function and hour (observe/usage.py)
            self.recorder.meter = UsageMeter(self.store, self.metrics, s.usage_retention)
        self.deployer = Deployer(s, self.store, self.registry, self.artifacts)
        self.sync = ClusterSync(self.store, self.registry, self.deployer, s.cluster_sync_interval) \
            if s.cluster_sync_interval else None  # other nodes deploy to the same database
        self.invoker = Invoker(s, self.registry, self.recorder, self.metrics if s.metrics else None,
                               limiter=self.limiter, localise=self.deployer.localise if self.sync else None)

        # the durable async queue, the services on top of the invoker, the triggers
        self.queue = AsyncQueue(s, self.invoker, self.registry)
        self.queue.revision_lookup = self.store.get_revision
        self.queue.on_failure = self._queued_trigger_failed
        self.storage = StorageService(s, self.store, self.keys)
        self.manager.specs.env_hook = self.storage.function_env
        self.db = DbService(s, self.keys)  # the document database (its faces answer on this port)
        self.apps, self._apps_face, self._firebase = apps_node.build(
            self.store, self.secret_box.derive, self.limiter, self.invoker, self.storage, self.keys,
            database=lambda: self.db.wx)  # the wx.cloud database API, once the database has started
        self.sites = Sites(self.store, s.data_dir / "sites")
        self.triggers = TriggerManager(s, self.store, self.invoker, self.queue, self.registry, self.recorder,
                                       self.metrics)
        self.queue.on_reply = lambda event, hops, ns: cloudevents.route(self.triggers, event, hops, ns)
        self.workflows = WorkflowService(self.store.engine, invoker_tasks(self.invoker), owner=s.node_id,
                                         function_name=lambda_function_name,
                                         write_lock=getattr(self.store, "_write_lock", None),  # SQLite: one writer
                                         retention=s.workflow_retention)
        self.removal = FunctionRemoval(s.code_dir, self.store, self.registry, self.manager, self.metrics, self.storage,
                                       self.triggers, self.queue, self.recorder)
        self.delete_function = self.removal.delete  # for every API (services.DeleteFunction)
        self.namespaces = Namespaces(NamespaceStore(self.store))  # tenants (tenancy.py, docs/tenancy.md)
        self.tenancy = TenancyOps(self.namespaces, self.store, self.registry, self.keys, self.delete_function,
                                  self.queue)
        # its buckets, tables, secrets, apps (with their users) and sites go too
        self.tenancy.owned += [self.storage, self.db, self.secret_values, self.apps, self.sites,
                               WorkflowsOwned(self.workflows),  # its state machines and executions
                               WhiskOwned(CompatStore(self.store), self.triggers)]  # OpenWhisk packages, triggers, rules
        self.quotas = QuotaGuard(self.namespaces.quotas, lambda: list(self.manager.awake), self.limiter,
                                 self.tenancy.functions, self.tenancy.backlog, lambda: self.namespaces.rated)
        self.manager.quota_room = self.quotas.room  # instances and memory, before each start
        self.tenancy.rate = self.quotas.rate_used
        if not s.db_url.startswith("sqlite"):  # a shared database: instances, memory and rate across nodes
            self.quotas.cluster = self.tenancy.cluster = ClusterUse(
                self.store, s.node_id, self.quotas.local_use, self.quotas.release)
        # stored bytes, database items, their quotas and metering, workflow transitions (namespace_use.py)
        self.use = NamespaceUse(self.namespaces.quotas, self.recorder.meter, s.storage_sample_s)
        self.use.attach(self.storage)
        self.use.attach_workflows(self.workflows.engine)
        self.use.flush = self.recorder.flush
        self.tenancy.held = self.use.held
        self.invoker.quota = self.quotas.admit  # invocations per second, at each call's admission
        self.deployer.admit_create = self.quotas.check_create  # functions, at a deploy that makes one
        self.queue.admit_job = self.quotas.admit_async  # the async backlog, at each async call
        # how instances reach this node: its AWS SDK endpoints, the relay for `network: polyfn` (reach.py)
        self.reach = InstanceReach(s, self.manager.sandbox, self.manager.specs, lambda: self.storage.url)

        # the faces
        self._gateway = Gateway(self.invoker, keys=self.keys, queue=self.queue)
        self.connections = Connections(s.node_id, s.ws_max_message)  # WebSocket connections held here (wsapi/)
        self._websockets = WebSocketEndpoint(self.invoker, self.connections, self.keys, s.ws_idle_timeout,
                                             s.ws_max_duration, verify_app=self._verify_app_token)
        self._ws_management = ManagementApi(self.connections, self.keys)
        self._ws_passthrough = Passthrough(self.invoker, self.keys)
        if s.metrics:
            self.metrics.gauge("polyfn_websocket_connections", "Open WebSocket connections this node holds, by function.",
                               ("function",), self.connections.by_function)
        self.sfn_api = StepFunctionsApi(self.workflows, lambda: self.keys, namespaces=self.namespaces)
        #: the one ASGI app (front.py): each request to its face; the control API built on first use
        self.front = FrontDoor(s, self._build_api, self.start, self.stop, (self.registry, self.sync, self.queue),
                               gateway=self._gateway, websockets=self._websockets, ws_passthrough=self._ws_passthrough,
                               ws_management=self._ws_management, sfn_api=self.sfn_api, apps_face=self._apps_face,
                               sites=self.sites, db=self.db, sts=StsApi(self.keys.sts, self.keys.signing_credentials),
                               firebase=self._firebase)
        self.asgi = self.front  # what uvicorn serves

        self.lifecycle = self._start_list()

    @property
    def api(self) -> Any:
        """The control API with the console mounted (FastAPI), built on first use (front.py)."""
        return self.front.api

    def _build_api(self, lifespan: Any) -> Any:
        from polyfn.api.app import build_api
        from polyfn.console import build_console

        s = self.settings
        api = build_api(
            settings=s, store=self.store, registry=self.registry, recorder=self.recorder, queue=self.queue,
            triggers=self.triggers, deployer=self.deployer, invoker=self.invoker, keys=self.keys,
            limiter=self.limiter, manager=self.manager, security_store=self.security_store,
            secret_box=self.secret_box, metrics=self.metrics, storage=self.storage,
            workflows=self.workflows, apps=self.apps, sites=self.sites, sync=self.sync,
            delete_function=self.delete_function, admin_key=self.admin_key, lifespan=lifespan,
            compat_entities=CompatStore(self.store), usage=self.store, namespaces=self.namespaces,
            tenancy_ops=self.tenancy, secret_values=self.secret_values)
        api.mount("/console", build_console(
            settings=s, store=self.store, registry=self.registry, recorder=self.recorder,
            triggers=self.triggers, deployer=self.deployer, invoker=self.invoker, metrics=self.metrics,
            storage=self.storage, workflows=self.workflows, db=self.db, admin_key=self.admin_key,
            keys=self.keys, namespaces=self.namespaces, usage=self.store))
        return api

    def _start_list(self) -> Lifecycle:
        """What starts, in order; each stop undoes its own start (see the module's docstring for the order)."""
        s = self.settings
        life = Lifecycle()
        life.add("directories", self._make_dirs)
        life.add("store", self.store.start, self.store.close)
        if self.artifacts is not None:
            life.add("artifact store client", None, self.artifacts.close)
        life.add("API keys", lambda: self.keys.start(self.admin_key), self.keys.stop)  # stop: last-used times
        life.add("namespaces", self.namespaces.load, self.namespaces.close)
        if self.otlp is not None:
            life.add("OTLP exporter", self._start_otlp, self.otlp.stop)
        life.add("activation records", self.recorder.start, self.recorder.stop)  # stop: flushed
        life.add("metrics", self.metrics.start, self.metrics.stop)
        life.add("object store", self.storage.start, self.storage.stop)  # binds its port: instances learn it
        life.add("app service", self.apps.start, self._stop_apps)
        life.add("document database", self._start_db, self.db.stop)
        life.add("stored use", self._start_use, self.use.stop)  # counts the buckets before the S3 port answers
        life.add("network relay", self.reach.start, self.reach.stop)
        life.add("instances", self.manager.start, self.manager.stop)  # stop: every instance and the zygote
        life.add("pools' ticker", self.ticker.start, self.ticker.stop)
        if self.quotas.cluster is not None:  # (this node's use, published; the others', read: quota_share.py)
            life.add("cluster quotas", self.quotas.cluster.start, self.quotas.cluster.stop)
        life.add("functions", self._activate_functions, self._drain)  # stop: no new calls, in-flight finish
        life.add("async queue", self.queue.start, lambda: self.queue.stop(s.drain_timeout))
        life.add("object store port", lambda: self.storage.serve(self.queue.enqueue), self.storage.stop_accepting)
        life.add("websocket connections", self.connections.start, self.connections.stop)  # stop: closed, 1001
        if s.queue_url:  # pushes to connections other nodes hold, over the queue's NATS connection (wsapi/cluster.py)
            life.add("websocket forwarding", self._forward_websocket_pushes)
        # the last hour's charts and health from the recorded activations, in the background (a long history
        # must not hold up /healthz)
        life.add("charts' history", self._start_history, self._stop_background)
        if self.examples:  # in the background: the node answers at once, a Go example builds meanwhile
            life.add("examples", self._start_examples)
        life.add("triggers", self.triggers.start, self.triggers.stop)  # unacknowledged messages stay queued
        life.add("workflows", self._start_workflows, lambda: self.workflows.stop(s.drain_timeout))
        if self.sync is not None:
            life.add("cluster sync", self._follow_cluster, self.sync.stop)
        life.add("ready", self._ready)
        return life

    async def start(self) -> None:
        await self.lifecycle.start()

    async def stop(self) -> None:
        """Stop what started, in reverse (see the module docstring); a failing step is logged and the rest
        still run, so activation records are always flushed and the store always closed."""
        await self.lifecycle.stop()

    # -- the steps --------------------------------------------------------------------------------------

    def _make_dirs(self) -> None:
        for d in (self.settings.code_dir, self.settings.deps_dir, self.settings.run_dir):
            d.mkdir(parents=True, exist_ok=True)

    def _start_otlp(self) -> None:
        self.otlp.start()
        log.info("exporting activations as OTLP spans to %s", self.settings.otlp_endpoint)

    async def _stop_apps(self) -> None:
        await self.apps.stop()
        await self._apps_face.close()

    async def _start_db(self) -> None:
        await self.db.start()
        self.manager.specs.instance_env.update(self.db.instance_env())
        self.triggers.ctx.db = self.db.feed  # table change triggers read the database's change feed

    async def _start_use(self) -> None:
        self.use.attach_db(self.db)
        await self.use.start()

    async def _activate_functions(self) -> None:
        if self.sync is not None:
            # A cluster node: its first pass activates every function it can run, other nodes' deploys
            # included (before the first request); `_follow_cluster` then follows them.
            try:
                await self.sync.sync_once()
            except Exception:  # the node still starts; the next passes try again
                log.exception("cluster sync at start failed")
            return
        await self.registry.activate_stored(self.store)

    async def _drain(self) -> None:
        self.invoker.accepting = False  # no new invocations
        await self.registry.drain_all(self.settings.drain_timeout)  # in-flight invocations finish
        await self.removal.settle(5)

    async def _start_workflows(self) -> None:
        """The workflow service (state machines, executions) on the store's database, running tasks through the
        invoker; its Step Functions face answers `POST /` requests with an `AWSStepFunctions.*` target."""
        await self.workflows.start()
        self.workflows.observe(self.metrics)

    async def _forward_websocket_pushes(self) -> None:
        if self.queue.jobs is not None:
            await Forwarder(self.connections, self.queue.jobs).start()

    async def _follow_cluster(self) -> None:
        assert self.sync is not None
        self.sync.start()
        self.sync.triggers = self.triggers
        if self.queue.jobs is not None:  # change notices over the queue's NATS connection
            jobs, me = self.queue.jobs, self.settings.node_id
            self.store.on_change = lambda: jobs.announce_change(me)
            await jobs.on_changes(me, self.sync.poke)

    def _ready(self) -> None:
        # Everything built so far lives as long as the node: move it out of the collector's way. Without
        # this, full collections under load scanned ~150k startup objects (~90 ms pauses, the p99).
        gc.collect()
        gc.freeze()
        global _heap_collapsed
        if self.settings.huge_heap and not _heap_collapsed:  # (a thread: ~1 ms per 2 MB; the node serves meanwhile)
            _heap_collapsed = True  # (once per process: a test's nodes share one)
            threading.Thread(target=_collapse_heap, name="huge-heap", daemon=True).start()
        log.info("polyfn %s ready: %d functions, isolation: %s", __version__, len(self.registry.functions),
                 self.manager.sandbox.isolation)
        log.info("%s", self.deployer.builds.describe())

    # -- what the parts call back ---------------------------------------------------------------------------

    def _verify_app_token(self, app_id: str, token: str) -> dict[str, Any] | None:
        """An app user's identity (the `Invoke` frame's map) when `token` is a live access token of `app_id`."""
        from polyfn.apps.tokens import TokenError

        try:
            return self.apps.verify(app_id, token).wire()
        except TokenError:
            return None

    def _queued_trigger_failed(self, job: Any, reason: str) -> None:
        """A failed attempt of a delivery that runs through the async queue (cron ticks, routed CloudEvents,
        storage events; the broker/topic/log runners count their own deliveries' failures):
        polyfn_trigger_errors_total{kind=<the trigger kind>}."""
        if job.trigger in QUEUED_TRIGGER_KINDS:
            self.metrics.trigger_errors.inc(job.function, job.trigger, reason)

    def _start_history(self) -> None:
        self._background.append(asyncio.create_task(replay_last_hour(self.store, self.metrics, time.time())))

    def _start_examples(self) -> None:
        self._background.append(asyncio.create_task(deploy_examples(self.store, self.deployer)))

    async def _stop_background(self) -> None:
        """An example still building or a history replay still reading: not worth waiting for."""
        for task in self._background:
            with contextlib.suppress(Exception):  # (a failed deploy of an example was logged where it failed)
                await cancelled(task)
        self._background.clear()


_heap_collapsed = False


def _collapse_heap() -> None:
    """The node's heap, built by now, on 2 MB pages (`linux.collapse_heap`: fewer TLB misses for a call after idle)."""
    log.info("heap on 2 MB pages: %d MB", collapse_heap() >> 20)
