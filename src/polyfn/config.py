"""Every node-wide setting and its default, in one place.

Settings come from keyword arguments (the CLI), then `POLYFN_*` environment variables, then these defaults.
Validation errors name the key, the value and the allowed range (pydantic does the naming).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir(env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """`$POLYFN_DATA_DIR`, else `~/.local/share/polyfn` (XDG style)."""
    env = os.environ if env is None else env
    if env.get("POLYFN_DATA_DIR"):
        return Path(env["POLYFN_DATA_DIR"]).expanduser()
    return Path.home() / ".local" / "share" / "polyfn"


@functools.cache
def physical_memory_mb() -> int:
    """The machine's RAM in MB (4096 when unknown), read once: `os.sysconf` is a `sysinfo` system call (~10 µs
    on a server just woken from idle), and every instance start asks for the memory budget."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLYFN_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # default: SQLite file in the data dir

    # Function limits: defaults and node-wide maxima.
    default_timeout: float = Field(60.0, gt=0)
    max_timeout: float = Field(24 * 3600.0, gt=0)  # long jobs are a feature: no 5-minute cap
    default_memory: int = Field(256, ge=32)
    max_memory: int = Field(16384, ge=32)
    max_instances: int = Field(100, ge=1)  # per function
    max_payload: int = Field(6 * 1024 * 1024, ge=1024)  # bytes, request and response
    max_code_size: int = Field(250 * 1024 * 1024, ge=1024)  # uncompressed bytes of one revision
    max_code_files: int = Field(20000, ge=1)
    max_queue: int = Field(1000, ge=0)  # invocations waiting for an instance, per function
    keepalive: float = Field(600.0, ge=0)  # idle instance kept this long (seconds)
    keepalive_policy: str = Field("fixed", pattern="^(fixed|hybrid|adaptive)$")  # functions' default (docs/performance.md)
    # The keep-alive policies' clock runs this many times real time (their idle times, windows and `keepalive`
    # are in its seconds; the reaper ticks as often as one of them): 1 in use; a live replay of a day-long trace
    # in minutes sets it (bench/replay.py).
    keepalive_time_scale: float = Field(1.0, ge=1.0, le=3600.0)
    autoscale_interval: float = Field(2.0, gt=0)  # seconds between autoscaler decisions per function
    # Memory all instances may reserve (each reserves its `memory`): MB, 0 = memory_budget_percent of RAM.
    memory_budget: int = Field(0, ge=0)
    memory_budget_percent: float = Field(75.0, gt=0, le=100)
    # The most of that budget one function's instances may reserve (%): its default cap on concurrent
    # instances (budget × share / memory), so no function can take the node (docs/operations.md, "Neighbours").
    function_memory_share: float = Field(50.0, gt=0, le=100)
    init_timeout: float = Field(30.0, gt=0)  # instance start → ready, bounded further by the function timeout
    drain_timeout: float = Field(30.0, ge=0)  # graceful shutdown: in-flight invocations get this long

    # Activation store.
    activation_retention_count: int = Field(100_000, ge=100)
    activation_retention_age: float = Field(7 * 24 * 3600.0, gt=0)
    # Workflows (docs/workflows.md): seconds an ended execution — a state machine's, a durable function's — is kept
    # with its history; then a sweep deletes it (90 days: as long as Step Functions keeps them).
    workflow_retention: float = Field(90 * 24 * 3600.0, gt=0)
    result_truncate: int = Field(4096, ge=0)  # bytes of the result kept in the activation record
    log_line_max: int = Field(16384, ge=80)  # longer lines are truncated with a marker
    log_lines_per_activation: int = Field(1000, ge=1)
    # Bytes of output kept (docs/observability.md, "Logs"): per activation (like Lambda's 256 KB log events),
    # per function a second on average, and in the activation store on disk in total (SQLite: the oldest
    # activations' logs are dropped beyond it, and the space is returned to the file system).
    log_bytes_per_activation: int = Field(256 * 1024, ge=1024)
    log_bytes_per_second: int = Field(4 * 1024 * 1024, ge=1024)
    log_store_max: int = Field(2 * 1024**3, ge=16 * 1024**2)

    # Observability.
    metrics: bool = True  # count invocations for /metrics, `polyfn top` and the console (off: benchmarks' baseline)
    # Usage metering (observe/usage.py, docs/usage.md): GB·s, invocations and bytes per function and hour, kept
    # `usage_retention` seconds (off: benchmarks' baseline; nothing is metered while off)
    usage_metering: bool = True
    usage_retention: float = Field(400 * 24 * 3600.0, gt=0)
    storage_sample_s: float = Field(300.0, ge=1)  # seconds between samples of stored bytes (GB-months metered)
    metrics_public: bool = True  # GET /metrics without the API key (set false to require it)
    console_session_ttl: float = Field(12 * 3600.0, ge=60)  # web console login lifetime (seconds)
    otlp_endpoint: str | None = None  # e.g. http://127.0.0.1:4318/v1/traces: export activations as OTLP spans
    # Async invocations and triggers (docs/triggers.md).
    async_max_inflight: int = Field(256, ge=1)  # async invocations held (running or about to) on this node
    # bytes of payloads those held invocations may carry in all: a job is taken while they are under it (so at
    # most this plus one payload; a payload larger than it still runs)
    async_max_held_bytes: int = Field(64 << 20, ge=1)
    # queue.db commits: "normal" survives kill -9 of the server (the OS has the write); "full" also fsyncs
    # every group commit, so accepted invocations survive a power loss too.
    queue_sync: str = Field("normal", pattern="^(normal|full)$")
    # Cluster async queue (docs/operations.md, "Cluster"): nats://host:port of a NATS server with JetStream.
    # Accepted async invocations then wait in its work-queue stream `queue_stream`, shared by every node using
    # the same stream, instead of this node's queue.db: any node runs them, and a node that dies for good
    # takes none with it (its held jobs go to another node `queue_ack_wait` seconds after its last heartbeat).
    queue_url: str = Field("", pattern=r"^((nats|tls)://\S+)?$")
    queue_stream: str = Field("POLYFN_JOBS", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    queue_ack_wait: float = Field(30.0, ge=1.0)
    callback_attempts: int = Field(5, ge=1)  # POSTs of a result to an X-Callback-Url before it is marked failed
    callback_backoff: float = Field(1.0, ge=0)  # seconds before the first callback retry (doubles, jittered)
    callback_timeout: float = Field(10.0, gt=0)  # seconds per callback POST
    # X-Callback-Url on unauthenticated calls (/fn/, /async-function/): comma-separated hosts the node may POST
    # results to; "" refuses them (400 callback_not_allowed) unless the caller sends an invoke-scope key;
    # "*" allows any host (docs/security.md, "Callbacks").
    callback_allow: str = ""
    trigger_reconnect_max: float = Field(30.0, gt=0)  # cap on a broker trigger's reconnect backoff (seconds)
    cron_leader_interval: float = Field(1.0, gt=0)  # PostgreSQL: seconds between cron leader lock attempts

    # Process isolation.
    cgroups: bool = True  # use the cgroup memory controller when available
    # Sandbox layers (docs/security.md). Comma-separated layers to turn off: cgroup,mount,pid,net,uid,seccomp;
    # `build`: deploy-time builds run as the server, with its environment (deploy/isolate.py).
    sandbox_disable: str = ""
    sandbox_uid_base: int = Field(200_000, ge=1000, le=2**31 - 70_000)  # per-function uids: base + n
    sandbox_uid_count: int = Field(60_000, ge=1, le=65_536)
    # Deploy-time builds (pip, npm, go; deploy/isolate.py), as root: each runs as one of `build_slots` uids right
    # after the functions' (a build waits for a free one), killed after `build_timeout` seconds, in `build_memory`
    # MB (a cgroup, else RLIMIT_AS), at most `build_processes` processes + threads and files of `build_file_size` MB.
    build_slots: int = Field(32, ge=1, le=1024)
    build_timeout: float = Field(900.0, gt=0)
    build_memory: int = Field(4096, ge=256)
    build_processes: int = Field(2048, ge=64)
    build_file_size: int = Field(4096, ge=16)
    # Whether builds get the credentials in the operator's pip/npm/Go settings and proxy URLs (`user:token@` of an
    # index URL, npm's `_authToken`): a deployer's setup.py can read whatever its build gets, so by default none
    build_credentials: bool = False
    tmp_size: int = Field(512, ge=1, le=10_240)  # MB of an instance's /tmp unless its function sets ephemeral_storage
    pids_max: int = Field(256, ge=8, le=1_000_000)  # processes + threads per instance (fork bombs)
    open_files: int = Field(1024, ge=64, le=1_048_576)  # RLIMIT_NOFILE per instance
    file_size: int = Field(512, ge=1)  # MB, largest file an instance may write (RLIMIT_FSIZE)
    cpu_quota: float = Field(0.0, ge=0)  # cores per instance, 0 = no hard cap (shares still apply)
    # The pid namespace's supervisor and init exec a small native program (sandbox/pidinit.c, built with the
    # system's C compiler) instead of staying forked interpreters; false (or no compiler) keeps Python ones.
    native_init: bool = True
    # Pre-forked Python blanks enter their staged root filesystem before their function is known (pivot_root and
    # the old root's unmount off the cold path; the function's code cloned from the zygote's copy of the host's
    # tree at spawn: sandbox/rootfs.py `enter_ahead`); false: they enter it at spawn, as before.
    enter_root_ahead: bool = True

    # HTTP connections (docs/operations.md, "HTTP limits"; gateway/limits.py).
    http_max_header_bytes: int = Field(32 * 1024, ge=1024, le=16 * 1024 * 1024)  # request line + headers → 431
    http_max_headers: int = Field(100, ge=8, le=10_000)  # headers per request → 431
    http_header_timeout: float = Field(10.0, gt=0)  # seconds from a request's first byte to its last header → 408
    http_body_timeout: float = Field(60.0, gt=0)  # seconds of grace for a request body, ...
    http_body_min_rate: float = Field(1024.0, gt=0)  # ... then at least these bytes a second on average → 408
    http_keepalive_timeout: float = Field(5.0, gt=0)  # seconds an idle keep-alive connection stays open
    http_max_connections: int = Field(10_000, ge=16)  # open at once; beyond, 503 and closed (fd limit raised to fit)
    # WebSocket APIs (docs/streaming.md, "WebSockets"): functions' defaults for a connection's idle time (no data
    # message either way) and its whole life, as API Gateway's (10 minutes idle, 2 hours); the largest message a
    # client may send or a post_to_connection may carry (API Gateway's 128 KB payload quota): a bigger one from a
    # client closes its connection with 1009, a bigger post is PayloadTooLargeException (413)
    ws_idle_timeout: float = Field(600.0, gt=0)
    ws_max_duration: float = Field(7200.0, gt=0)
    ws_max_message: int = Field(128 * 1024, ge=1024, le=16 * 1024 * 1024)
    ws_ping_interval: float = Field(20.0, ge=0)  # seconds between the server's pings (dead peers go); 0 = none

    # Access control.
    tls_cert: str | None = None  # PEM certificate: serve HTTPS (with tls_key)
    tls_key: str | None = None
    key_rate: float = Field(0.0, ge=0)  # control-API requests per second per API key (token bucket); 0 = off
    key_burst: float = Field(50.0, ge=1)

    @property
    def callback_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower().strip("[]") for h in self.callback_allow.split(",") if h.strip())

    @property
    def disabled_layers(self) -> set[str]:
        return {x.strip() for x in self.sandbox_disable.split(",") if x.strip()}

    # Python zygote: preload the vendor libraries unmodified functions import (Flask, functions-framework,
    # azure.functions) after it is ready, so gcp/azure functions start as fast as any other.
    zygote_vendor_preload: bool = True
    # The server's heap on 2 MB pages once the node is ready (Linux ≥ 6.1 `MADV_COLLAPSE`, stretches already in
    # memory only): a call after idle misses the TLB less (docs/performance.md, "cold10": 2-5 % of a start from the
    # zygote at low load). Off by default: in the lead's quiet runs the `hi` row's loop CPU read 1.14-1.22x the
    # session's start twice with it on (0.91 once; 1.02 with it off): not settled, so the hot path is not risked.
    huge_heap: bool = False
    # Per-function zygotes (import cache): after a revision's first cold start, a sandboxed process with its
    # module imported forks its further instances (docs/performance.md, "Per-function zygotes").
    function_zygotes: bool = True
    # A deploy of a new revision of a function this node serves returns once that revision's function zygote
    # (built at deploy) is ready, waiting at most this many seconds: its first call forks instead of waiting
    # for the module's import. 0: return at once.
    deploy_zygote_wait: float = Field(10.0, ge=0)
    # Package zygotes (SOCK's import cache, across functions): a fork of the Python zygote that imported the
    # packages of a dependency layer (deps/SHA) a deploy installed; a function of the same namespace with that
    # layer starts from it instead of importing them (docs/performance.md, "Package zygotes"). Their import
    # code runs as the zygote's does, before any sandbox: only layers whose every distribution is named in
    # `package_zygote_trust` (the operator's list, installed from the node's own index) get one.
    package_zygotes: bool = True
    package_zygote_trust: str = ("numpy,pillow,scipy,scikit-learn,joblib,threadpoolctl,cloudpickle,narwhals,"
                                 "pandas,python-dateutil,pytz,tzdata,six")  # (scikit-learn 1.9 needs the 4 after it)
    package_zygote_memory_mb: int = Field(512, ge=0)  # RSS of the node's package zygotes together (LRU beyond)

    # Object storage (S3-compatible API on its own port; docs/storage.md).
    storage_port: int = Field(9000, ge=0, le=65535)  # 0 disables the object store
    storage_host: str | None = None  # default: the same interface as `host`
    storage_backend: str = Field("local", pattern="^(local|s3)$")
    storage_path: Path | None = None  # local backend directory; default <data dir>/storage
    storage_region: str = "us-east-1"
    storage_max_object_size: int = Field(5 * 1024**3, ge=1)  # bytes of one PUT / one completed upload
    storage_fsync: bool = False  # fsync each object before it becomes visible (durable across power loss)
    storage_upstream_url: str | None = None  # s3 backend: the upstream endpoint (AWS, SeaweedFS, MinIO …)
    storage_upstream_access_key_id: str | None = None
    storage_upstream_secret_access_key: str | None = None
    storage_upstream_region: str = "us-east-1"
    # virtual-host addressing: `BUCKET.<domain>` in the Host header names the bucket (comma-separated list)
    storage_domain: str = Field("localhost", pattern=r"^[A-Za-z0-9.\-]+(,[A-Za-z0-9.\-]+)*$")
    # Document database (docs/database.md): seconds between TTL-expiry / stream-retention sweeps.
    db_sweep_interval: float = Field(5.0, gt=0)
    # Cluster (docs/operations.md, "Cluster"): nodes sharing `database_url` (PostgreSQL) serve the same functions.
    # `cluster` (`polyfn serve --cluster`) asserts this node is one of them: it refuses to start without the
    # shared database and queue, instead of quietly keeping its async jobs to itself.
    cluster: bool = False
    # This node's name among the cluster's (broker consumer names, e.g. Redis Streams): "" → hostname plus a
    # digest of the data dir, stable across restarts of the same node.
    node_name: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    # Where deploys put code archives for the other nodes: s3://bucket[/prefix] on `artifacts_endpoint` (any S3,
    # a polyfn node's storage API included); "" keeps code in this node's data dir only.
    artifacts_url: str = Field("", pattern=r"^(s3://[^/\s]+(/\S*)?)?$")
    artifacts_endpoint: str = ""
    artifacts_access_key_id: str = ""
    artifacts_secret_access_key: str = ""
    artifacts_region: str = "us-east-1"
    # Seconds between checks of the database for functions other nodes deployed, changed or deleted;
    # -1: every 2 s when the database is PostgreSQL, never with the embedded SQLite file; 0: never.
    sync_interval: float = Field(-1.0, ge=-1.0)
    node_blanks: int = Field(1, ge=0, le=8)  # pre-started Node.js processes kept per memory size once Node is used
    http_private_network: bool = True  # http-runtime instances in their own network namespace (root only)

    @model_validator(mode="after")
    def _cluster_needs_shared_services(self) -> Settings:
        if self.cluster:
            missing = []
            if not (self.database_url or "").startswith("postgresql"):
                missing.append("POLYFN_DATABASE_URL (a PostgreSQL URL, e.g. postgresql+asyncpg://polyfn@db/polyfn)")
            if not self.queue_url:
                missing.append("POLYFN_QUEUE_URL (NATS with JetStream, e.g. nats://nats:4222)")
            if missing:
                raise ValueError("cluster mode needs what the nodes share: " + "; ".join(missing))
        return self

    @property
    def node_id(self) -> str:
        if self.node_name:
            return self.node_name
        import hashlib
        import socket

        digest = hashlib.sha256(str(self.data_dir.expanduser().resolve()).encode()).hexdigest()[:8]
        return f"{socket.gethostname()}-{digest}"

    @property
    def memory_budget_mb(self) -> int:
        if self.memory_budget:
            return self.memory_budget
        return max(1, int(physical_memory_mb() * self.memory_budget_percent / 100))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'polyfn.db'}"

    @property
    def cluster_sync_interval(self) -> float:
        """`sync_interval` resolved: 0 means this node never looks for other nodes' deploys."""
        if self.sync_interval >= 0:
            return self.sync_interval
        return 0.0 if self.db_url.startswith("sqlite") else 2.0

    @property
    def code_dir(self) -> Path:
        return self.data_dir / "code"

    @property
    def deps_dir(self) -> Path:
        return self.data_dir / "deps"

    @property
    def storage_dir(self) -> Path:
        return self.storage_path or self.data_dir / "storage"

    @property
    def storage_domains(self) -> tuple[str, ...]:
        return tuple(d.strip(".").lower() for d in self.storage_domain.split(",") if d.strip("."))

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"
