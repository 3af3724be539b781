"""Domain types shared by the API, the store and the scheduler.

Plain `msgspec.Struct`s: cheap to build on the hot path, JSON-serialisable for the API and the store.
Validation of user input happens once, in `validate_spec`, with messages that name the key, the value
and the allowed range (see `config.Limits` for the node-wide bounds).
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec

from polyfn.protocol import LogLine

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
RUNTIMES = ("python", "node", "http", "dotnet")  # dotnet: C# Azure functions on Mono (runtimes/dotnet)
FLAVORS = ("native", "openfaas", "openfaas-http", "aws", "gcp", "azure", "aliyun", "tencent", "kubeless", "openwhisk")
# Node.js-only flavors and the http runtime's (runtimes/node/flavors, runtimes/http).
FLAVORS += ("wechat", "knative")


EPHEMERAL_MIN, EPHEMERAL_MAX = 16, 10_240  # MB of /tmp a function may ask for (Lambda: 512..10240)


class FunctionSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user deploys: everything but the code. Frozen into a revision at deploy time."""

    name: str
    runtime: str = "python"
    flavor: str = "native"
    handler: str = "handler.handler"  # MODULE.FUNC, split at the last dot
    memory: int = 256  # MB
    # MB of the instance's /tmp (a tmpfs: what it holds counts towards `memory`); None = the node's default
    # (POLYFN_TMP_SIZE, 512 MB as Lambda's). Lambda's `--ephemeral-storage` (512..10240).
    ephemeral_storage: int | None = None
    timeout: float = 60.0  # seconds
    concurrency: int = 1  # in-flight invocations per instance
    min_instances: int = 0
    max_instances: int = 10
    keepalive: float | None = None  # seconds an idle instance is kept; None = node default
    keepalive_policy: str | None = None  # fixed | hybrid | adaptive (scheduler/keepalive.py); None = node default
    env: dict[str, str] = {}
    # Free-form metadata kept with the revision: what a vendor API or definition file said that polyfn
    # has no field for (a Lambda Role, OpenFaaS labels...). Keys are `vendor/key`; never read by the runtime.
    annotations: dict[str, str] = {}
    # egress (default: the outside world, not the host: sandbox/egress.py) | host (= all: the node's own network,
    # by explicit choice only) | polyfn (only polyfn's own endpoints) | none (loopback only)
    network: str = "egress"
    # egress/polyfn: HOST:PORT the function may reach on the host or its networks (relayed); egress also CIDR,
    # CIDR:PORT, CIDR:LOW-HIGH (routed, sandbox/egress.py)
    allow_net: list[str] = []
    # HTTP trigger: anonymous | key (x-functions-key header or ?code=, an invoke key) | app (only signed-in users
    # of an app, through /app/{env}/call/NAME: polyfn.apps)
    auth: str = "anonymous"
    cors: dict[str, Any] | None = None  # {"origins": [...], "methods": [...], "headers": [...], "max_age": s}
    rate_limit: float = 0.0  # invocations per second (token bucket, burst = max(1, rate)); 0 = unlimited
    secrets: list[str] = []  # "NAME" → file /run/secrets/NAME; "NAME:env" → environment variable NAME
    # Asynchronous invocations and trigger deliveries (see docs/triggers.md): how often a failed one is
    # tried in all, the first retry delay (doubling each time, capped, with jitter), which failures are
    # retried, and how old an event may get before it goes to the dead-letter queue instead of running.
    retry_attempts: int = 3
    retry_backoff: float = 1.0  # seconds before the first retry
    retry_backoff_max: float = 300.0  # seconds, cap on one retry delay
    retry_on: list[str] = msgspec.field(default_factory=lambda: ["timeout", "crash", "5xx", "throttle"])
    max_event_age: float = 6 * 3600.0  # seconds
    # A streamed response (docs/streaming.md) runs under these instead of `timeout` once its head is sent: it is
    # stopped when the function writes nothing for `stream_idle_timeout` seconds, or has streamed for
    # `stream_max_duration` seconds in all (Lambda's limit for a streamed response: 15 minutes).
    stream_idle_timeout: float = 60.0
    stream_max_duration: float = 900.0
    # WebSocket API (docs/streaming.md, "WebSockets"): the routes that invoke the function ($connect, $disconnect,
    # $default and custom route keys); the route selection expression that picks a message's route key; and the
    # connection's idle and total limits in seconds (None = the node's POLYFN_WS_IDLE_TIMEOUT / _MAX_DURATION)
    ws_routes: list[str] = msgspec.field(default_factory=lambda: ["$connect", "$disconnect", "$default"])
    ws_route_selection: str = "$request.body.action"
    # routes whose answer goes back to the client (API Gateway's two-way routes, with a route response); "*" = all
    ws_responses: list[str] = msgspec.field(default_factory=lambda: ["$default"])
    ws_idle_timeout: float | None = None
    ws_max_duration: float | None = None
    # `http` runtime: the program speaks h2c (HTTP/2 without TLS), as a Knative container port named `h2c` says.
    # Then `Upgrade: h2c` and prior-knowledge HTTP/2 connections at /fn/NAME pass through to it (docs/streaming.md,
    # "h2c"); otherwise the node declines the upgrade and answers prior knowledge 400.
    h2c: bool = False


#: Failure classes a function's `retry_on` may name.
RETRY_CLASSES = ("timeout", "crash", "5xx", "throttle")

NETWORKS = ("egress", "host", "all", "polyfn", "none")


class Revision(msgspec.Struct, kw_only=True):
    """An immutable snapshot of a function's code and config."""

    function: str
    number: int
    spec: FunctionSpec
    code_sha256: str
    code_dir: str  # absolute path of the extracted, read-only code
    deps_dir: str | None = None  # site dir with requirements.txt packages, shared by hash
    created_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.function}@{self.number}"


class FunctionInfo(msgspec.Struct, kw_only=True):
    name: str
    revision: int
    created_at: float
    updated_at: float
    spec: FunctionSpec
    code_sha256: str




class Activation(msgspec.Struct, kw_only=True, gc=False):
    """The record of one invocation. (`gc=False`: thousands per second wait in the recorder's buffer long
    enough to reach the older GC generations; none can be part of a reference cycle.)"""

    id: str
    function: str
    revision: int
    trigger: str  # "http" | "invoke" | ...
    start: float  # epoch seconds when polyfn accepted the invocation
    end: float = 0.0
    duration_ms: float = 0.0  # end - start
    wait_ms: float = 0.0  # waiting for an instance (includes cold start)
    init_ms: float = 0.0  # instance start time when cold
    run_ms: float = 0.0  # time inside the instance
    cold: bool = False
    status: str = "success"  # success | error | timeout | crashed | throttled | oom; async: pending | running | dead_letter
    status_code: int = 200
    result: str = ""  # truncated
    error: dict[str, Any] | None = None
    logs: list[LogLine] = []
    instance: str = ""
    trace_id: str = ""  # W3C trace id (32 hex): the caller's `traceparent`, else a new one
    parent_id: str = ""  # the caller's span id (16 hex) when it sent a `traceparent`
    init_info: str = ""  # cold starts: how the instance was made (e.g. "zygote: function") and its sandbox
    # a streamed response: {"bytes", "chunks", "ttfb_ms" (first chunk, from the call's start), "end" (complete |
    # error | client_disconnected | idle_timeout | max_duration | instance_gone | cancelled)}; None when buffered
    stream: dict[str, Any] | None = None
    # peak memory of the instance's sandbox (its cgroup: the process, its children and its /tmp) since it
    # started, read when the invocation ended, MB (Lambda's "Max Memory Used"); 0 when unknown (no cgroup)
    max_memory_mb: float = 0.0
    # usage metering (observe/usage.py): the function's configured memory, the request's and the response's
    # bytes (a stream's: every chunk). 0 in records made before 0014.
    memory_mb: int = 0
    req_bytes: int = 0
    resp_bytes: int = 0


def now() -> float:
    return time.time()


class SpecError(ValueError):
    """A user-provided spec value is out of range; `code` is the stable API error code."""

    def __init__(self, message: str, code: str = "invalid_spec") -> None:
        super().__init__(message)
        self.code = code


def validate_name(name: str) -> str:
    """A function's name, or its held name `namespace~name` (polyfn/tenancy.py)."""
    ns, sep, local = name.partition("~") if isinstance(name, str) else ("", "", name)
    if sep and NAME_RE.match(ns) and len(ns) <= 40:
        name = local
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError(
            f"invalid function name {name!r}: use 1-63 characters a-z, 0-9 and '-', starting with a letter",
            code="invalid_name",
        )
    return name


def validate_spec(spec: FunctionSpec, max_timeout: float, max_memory: int, max_instances: int) -> FunctionSpec:
    """Check every field against the node's limits; raise SpecError naming key, value and range (the first
    problem found, in the order below)."""
    validate_name(spec.name)
    _check_kind(spec)
    _check_limits(spec, max_timeout, max_memory, max_instances)
    _check_websocket(spec)
    _check_secrets_and_cors(spec)
    _check_network(spec)
    _check_retries(spec)
    _check_env_and_annotations(spec)
    return spec


def _rng(key: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise SpecError(f"{key}={value!r} is out of range: allowed {lo}..{hi}")


def _check_kind(spec: FunctionSpec) -> None:
    """runtime, flavor, h2c and the handler's form for the runtime."""
    if spec.runtime not in RUNTIMES:
        raise SpecError(f"runtime={spec.runtime!r} is not supported: use one of {', '.join(RUNTIMES)}")
    if spec.flavor not in FLAVORS:
        raise SpecError(f"flavor={spec.flavor!r} is not supported: use one of {', '.join(FLAVORS)}")
    if spec.h2c and spec.runtime != "http":
        raise SpecError(f"h2c=true is for the http runtime (a program that serves h2c on $PORT), not {spec.runtime!r}")
    if spec.runtime == "http":  # the handler of an http function is its command line
        if not spec.handler.strip() or "\n" in spec.handler or "\0" in spec.handler:
            raise SpecError(f"handler={spec.handler!r} must be the command that starts the HTTP server")
    elif spec.runtime == "dotnet":  # a C# function's [FunctionName], as Azure allows them
        if not re.match(r"^[A-Za-z][\w-]{0,126}$", spec.handler or ""):
            raise SpecError(f"handler={spec.handler!r} must be a C# [FunctionName] (a letter, then letters, digits, _ or -)")
    elif not re.match(r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$", spec.handler or ""):
        raise SpecError(f"handler={spec.handler!r} must look like MODULE.FUNCTION (e.g. handler.handle)")


def _check_limits(spec: FunctionSpec, max_timeout: float, max_memory: int, max_instances: int) -> None:
    """Resources, scaling, keep-alive, auth, rate and stream limits."""
    _rng("memory", spec.memory, 32, max_memory)
    if spec.ephemeral_storage is not None:
        _rng("ephemeral_storage", spec.ephemeral_storage, EPHEMERAL_MIN, EPHEMERAL_MAX)
    _rng("timeout", spec.timeout, 0.1, max_timeout)
    _rng("concurrency", spec.concurrency, 1, 1000)
    if spec.max_instances < 1:
        raise SpecError(f"max_instances={spec.max_instances!r} is out of range: a function needs at least 1 "
                        f"instance to run (allowed 1..{max_instances}); to stop a function, delete it")
    _rng("max_instances", spec.max_instances, 1, max_instances)
    if spec.min_instances < 0:
        raise SpecError(f"min_instances={spec.min_instances!r} is out of range: it cannot be negative "
                        f"(allowed 0..{spec.max_instances}, the function's max_instances)")
    _rng("min_instances", spec.min_instances, 0, spec.max_instances)
    if spec.keepalive_policy not in (None, "fixed", "hybrid", "adaptive"):
        raise SpecError(f"keepalive_policy={spec.keepalive_policy!r} is not supported: use fixed, hybrid or "
                        "adaptive")
    if spec.keepalive is not None:
        _rng("keepalive", spec.keepalive, 0, 7 * 24 * 3600)
    if spec.auth not in ("anonymous", "key", "app"):
        raise SpecError(f"auth={spec.auth!r} is not supported: use anonymous, key or app")
    _rng("rate_limit", spec.rate_limit, 0, 1e6)
    _rng("stream_idle_timeout", spec.stream_idle_timeout, 0.1, 24 * 3600)
    _rng("stream_max_duration", spec.stream_max_duration, 0.1, 24 * 3600)


def _check_websocket(spec: FunctionSpec) -> None:
    if spec.ws_idle_timeout is not None:
        _rng("ws_idle_timeout", spec.ws_idle_timeout, 1, 24 * 3600)
    if spec.ws_max_duration is not None:
        _rng("ws_max_duration", spec.ws_max_duration, 1, 7 * 24 * 3600)
    if not re.match(r"^\$request\.body(\.[A-Za-z0-9_-]+)+$", spec.ws_route_selection):
        raise SpecError(f"ws_route_selection={spec.ws_route_selection!r} is not supported: use $request.body.FIELD "
                        "(dots for nested fields), as API Gateway's route selection expression")
    for route in [*spec.ws_routes, *[r for r in spec.ws_responses if r != "*"]]:
        if not isinstance(route, str) or not 1 <= len(route) <= 128 or (
                route.startswith("$") and route not in ("$connect", "$disconnect", "$default")):
            raise SpecError(f"ws_routes entry {route!r}: a route key is 1..128 characters; the only ones starting "
                            "with $ are $connect, $disconnect and $default")


def _check_secrets_and_cors(spec: FunctionSpec) -> None:
    for entry in spec.secrets:
        sname, _, how = entry.partition(":")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$", sname) or how not in ("", "env", "file"):
            raise SpecError(f"secrets entry {entry!r} must be NAME, NAME:file or NAME:env")
        if how == "env" and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", sname):
            raise SpecError(f"secrets entry {entry!r}: {sname!r} is not a valid environment variable name")
    if spec.cors is not None:
        allowed = {"origins", "methods", "headers", "max_age", "credentials", "expose_headers"}
        unknown = set(spec.cors) - allowed
        if unknown or not isinstance(spec.cors.get("origins", []), list):
            raise SpecError(f"cors must be an object with keys {sorted(allowed)} (origins a list); got {spec.cors!r}")


def _check_network(spec: FunctionSpec) -> None:
    """network and its allow_net entries (a CIDR needs `egress`)."""
    if spec.network not in NETWORKS:
        raise SpecError(f"network={spec.network!r} is not supported: use one of {', '.join(NETWORKS)}")
    if spec.allow_net and spec.network not in ("egress", "polyfn"):
        raise SpecError(f"allow_net applies to network egress or polyfn, not {spec.network!r} (host reaches "
                        "everything the node can; none reaches nothing)", "invalid_allow_net")
    if len(spec.allow_net) > 32:
        raise SpecError(f"allow_net has {len(spec.allow_net)} entries: at most 32", "invalid_allow_net")
    from polyfn.sandbox.egress import Range, parse_entry

    for entry in spec.allow_net:
        try:
            parsed = parse_entry(entry)
        except ValueError as e:
            raise SpecError(str(e), "invalid_allow_net") from None
        if isinstance(parsed, Range) and spec.network != "egress":
            raise SpecError(f"allow_net entry {entry!r} is a CIDR: ranges are routed, which needs network egress "
                            f"(network {spec.network!r} relays HOST:PORT entries only)", "invalid_allow_net")


def _check_retries(spec: FunctionSpec) -> None:
    _rng("retry_attempts", spec.retry_attempts, 1, 100)
    _rng("retry_backoff", spec.retry_backoff, 0, 3600)
    _rng("retry_backoff_max", spec.retry_backoff_max, 0, 24 * 3600)
    _rng("max_event_age", spec.max_event_age, 1, 7 * 24 * 3600)
    for cls in spec.retry_on:
        if cls not in RETRY_CLASSES:
            raise SpecError(f"retry_on={cls!r} is not a failure class: use any of {', '.join(RETRY_CLASSES)}")


def _check_env_and_annotations(spec: FunctionSpec) -> None:
    for k, v in spec.env.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) or not isinstance(v, str):
            raise SpecError(f"env key {k!r} is not a valid environment variable name")
    if len(spec.annotations) > 128:
        raise SpecError(f"annotations has {len(spec.annotations)} entries: allowed 0..128")
    for k, v in spec.annotations.items():
        if not isinstance(v, str) or not (0 < len(k) <= 253) or len(v) > 65536:
            raise SpecError(f"annotation {k[:80]!r}: keys are 1..253 characters, values strings up to 64 KiB")
