"""What every trigger runner shares: the context it runs in, its health, and option parsing helpers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polyfn.queue.retry import failure_reason  # noqa: F401  (the runners' name for it)

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.invoker import Invoker
    from polyfn.queue.dispatcher import AsyncQueue
    from polyfn.scheduler.registry import FunctionRegistry
    from polyfn.triggers.store import Trigger, TriggerStore


class TriggerFailure(Exception):
    """A trigger step failed for a known reason (e.g. `enqueue_failed`): counted under that reason, not as a
    crashed runner, when it reaches the supervisor."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class TriggerConfigError(ValueError):
    """A trigger's options are invalid; the message names the option, the value and what is allowed."""

    def __init__(self, message: str, code: str = "invalid_trigger"):
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    settings: Settings
    invoker: Invoker
    queue: AsyncQueue
    registry: FunctionRegistry
    store: TriggerStore
    recorder: Any = None  # ActivationRecorder: log triggers follow functions' output through it
    metrics: Any = None  # polyfn.observe.metrics.Metrics: failures count in polyfn_trigger_errors_total
    leader: Any = None  # triggers.leader.CronLeader: whether this node fires cron ticks
    db: Any = None  # db.changes.ChangeFeed: table change triggers read it
    #: targets other than functions: a trigger whose `function` is `<prefix>:<name>` hands its events to
    #: `sinks[prefix](name, key, data)` (e.g. `openwhisk:` fires an OpenWhisk trigger); `key` is unique per event
    sinks: dict[str, Any] = field(default_factory=dict)


class Runner:
    """One live trigger. `run()` runs until cancelled; `health` is what `polyfn trigger list` shows."""

    kind = ""

    def __init__(self, trigger: Trigger, ctx: Context):
        self.trigger = trigger
        self.ctx = ctx
        self.health: dict[str, Any] = {"state": "starting", "message": "", "since": time.time()}
        self.delivered = 0
        self.dead_lettered = 0
        self.errors = 0
        self.last_error: dict[str, Any] | None = None

    def count_error(self, reason: str, message: str = "", n: int = 1) -> None:
        """`n` more `polyfn_trigger_errors_total{function, kind, reason}` (a failed delivery, a broker
        connection that errored, a runner that crashed); the last one is kept for `polyfn trigger list`."""
        self.errors += n
        self.last_error = {"reason": reason, "message": (message or self.health.get("message", ""))[:500],
                           "time": time.time()}
        if self.ctx.metrics is not None:
            self.ctx.metrics.trigger_errors.inc(self.trigger.function, self.trigger.kind, reason, n=n)

    def set_health(self, state: str, message: str = "") -> None:
        if state != self.health.get("state") or message != self.health.get("message"):
            self.health = {"state": state, "message": message, "since": time.time()}

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}


def opt_str(config: dict[str, Any], key: str, default: str | None = None, required: bool = False) -> str | None:
    v = config.get(key, default)
    if v is None:
        if required:
            raise TriggerConfigError(f"option {key!r} is required")
        return None
    if not isinstance(v, str) or not v:
        raise TriggerConfigError(f"option {key}={v!r} must be a non-empty string")
    return v


def opt_url(config: dict[str, Any], key: str, default: str, schemes: tuple[str, ...], example: str) -> str:
    """A broker URL that can work: a known scheme, a host, a valid port (several comma-separated for NATS).
    A URL that never could is a 400 naming the option, not a trigger that errors forever."""
    from urllib.parse import urlsplit

    from polyfn.triggers.redact import redact_url

    value = opt_str(config, key, default)
    assert value is not None
    for one in value.split(","):
        try:
            u = urlsplit(one.strip())
            u.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as e:
            raise TriggerConfigError(f"option {key}={redact_url(value)!r}: {e}; e.g. {example}") from None
        if u.scheme not in schemes:
            raise TriggerConfigError(f"option {key}={redact_url(value)!r}: the scheme must be "
                                     f"{' or '.join(s + '://' for s in schemes)}; e.g. {example}")
        if not u.hostname and u.scheme != "unix":
            raise TriggerConfigError(f"option {key}={redact_url(value)!r} has no host; e.g. {example}")
    return value


def opt_num(config: dict[str, Any], key: str, default: float, lo: float, hi: float, integer: bool = False) -> Any:
    v = config.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
        raise TriggerConfigError(f"option {key}={v!r} must be {'an integer' if integer else 'a number'}")
    if not lo <= v <= hi:
        raise TriggerConfigError(f"option {key}={v!r} is out of range: allowed {lo}..{hi}")
    return v


STANDBY = "the cluster's leader node consumes this subscription (every subscriber would get every message)"


class LostLeadership(Exception):
    """This node stopped being the cluster's leader while a single-consumer trigger was connected."""


class BrokerRunner(Runner):
    """A runner that holds a broker connection: `consume()` connects, calls `connected()`, and loops until the
    connection fails (it raises). `run()` reconnects with exponential backoff and jitter, and keeps the error
    in `health` meanwhile, so `polyfn trigger list` shows why a trigger is not receiving."""

    async def run(self) -> None:
        import asyncio
        import random

        delay = 0.2
        while True:
            leader = self._cluster_leader()
            if leader is not None and not leader.is_leader:
                self.set_health("standby", STANDBY)
                await leader.wait()
            if self.health["state"] != "error":  # after a failure the error stays visible until connected
                self.set_health("connecting")
            try:
                await self._consume_while_leader(leader)
                raise ConnectionError("the broker closed the connection")
            except asyncio.CancelledError:
                raise
            except LostLeadership:
                self.set_health("standby", STANDBY)
                continue
            except Exception as e:
                if self.health["state"] == "connected":
                    delay = 0.2  # it worked for a while: reconnect promptly
                self.set_health("error", f"{type(e).__name__}: {e}"[:500])
                if type(e).__name__ != "Interrupted":  # the node is shutting down: not a broker failure
                    self.count_error(getattr(e, "reason", "connection"))
            finally:
                await self.close()
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.ctx.settings.trigger_reconnect_max)

    def single_consumer(self) -> bool:
        """True when every node running this trigger would receive every message (an MQTT subscription, a
        core NATS subject without a queue group): in a cluster only the leader node (the cron leader,
        `triggers/leader.py`) consumes it, so each message runs the function once. Consumer groups, queues
        and durable consumers share the work between nodes by themselves."""
        return False

    def _cluster_leader(self) -> Any:
        leader = self.ctx.leader
        if self.single_consumer() and leader is not None and getattr(leader, "dsn", None):
            return leader
        return None

    async def _consume_while_leader(self, leader: Any) -> None:
        """`consume()`, stopped (disconnected) as soon as this node is no longer the cluster's leader."""
        import asyncio
        import contextlib

        if leader is None:
            await self.consume()
            return
        task = asyncio.ensure_future(self.consume())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=leader.interval)
                if not task.done() and not leader.is_leader:
                    raise LostLeadership("another node consumes this trigger now")
            task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def connected(self) -> None:
        self.set_health("connected")

    async def consume(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def close(self) -> None:
        pass


def only(config: dict[str, Any], kind: str, allowed: set[str]) -> None:
    unknown = set(config) - allowed
    if unknown:
        raise TriggerConfigError(f"unknown {kind} option(s): {', '.join(sorted(unknown))}; "
                                 f"allowed: {', '.join(sorted(allowed))}")
