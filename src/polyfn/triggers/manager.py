"""Owns every live trigger on the node: validates and persists definitions, runs one task per trigger,
restarts a runner that crashed (with backoff), and reports health for `polyfn trigger list`."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from polyfn.tenancy import qualify, split
from polyfn.triggers.base import Context, Runner, TriggerConfigError, TriggerFailure
from polyfn.triggers.leader import CronLeader
from polyfn.triggers.redact import redact
from polyfn.triggers.store import Trigger, TriggerStore

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.invoker import Invoker
    from polyfn.queue.dispatcher import AsyncQueue
    from polyfn.scheduler.registry import FunctionRegistry

log = logging.getLogger("polyfn.triggers")

#: kind → module under polyfn.triggers with `validate(config) -> config` and `RUNNER` (imported lazily, so a
#: broker's client library is only needed when a trigger of that kind exists).
KINDS = {"cron": "cron", "topic": "topic", "nats": "nats", "redis": "redis_streams", "amqp": "amqp",
         "mqtt": "mqtt", "kafka": "kafka", "log": "log", "events": "events", "dynamodb": "dynamodb"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def kind_module(kind: str) -> Any:
    if kind not in KINDS:
        raise TriggerConfigError(f"kind={kind!r} is not a trigger kind: use one of {', '.join(KINDS)}",
                                 code="invalid_trigger_kind")
    try:
        return importlib.import_module(f"polyfn.triggers.{KINDS[kind]}")
    except ImportError as e:
        raise TriggerConfigError(f"{kind} triggers need an extra client library ({e.name}): "
                                 "pip install 'polyfn[brokers]'", code="trigger_unavailable") from None


class TriggerManager:
    def __init__(self, settings: Settings, store: Any, invoker: Invoker, queue: AsyncQueue,
                 registry: FunctionRegistry, recorder: Any = None, metrics: Any = None):
        self.settings = settings
        self.tstore = TriggerStore(store)
        self.leader = CronLeader(settings.database_url, settings.cron_leader_interval)
        self.ctx = Context(settings, invoker, queue, registry, self.tstore, recorder, metrics, self.leader)
        self.runners: dict[str, Runner] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._deleted: set[str] = set()  # ids deleted through this node: `reconcile` never relaunches them
        self._unlaunchable: set[str] = set()  # ids `reconcile` could not start (logged once)

    async def start(self) -> None:
        await self.leader.start()
        for t in await self.tstore.list():
            try:
                self._launch(t)
            except TriggerConfigError as e:
                log.warning("trigger %s not started: %s", t.id, e)

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for r in self.runners.values():
            with contextlib.suppress(Exception):
                await r.close()  # type: ignore[attr-defined]
        self.tasks.clear()
        await self.leader.stop()

    def _launch(self, t: Trigger, runner: Runner | None = None) -> Runner:
        runner = runner or kind_module(t.kind).RUNNER(t, self.ctx)
        self.runners[t.id] = runner
        self.tasks[t.id] = asyncio.create_task(self._supervise(runner), name=f"trigger {t.id}")
        return runner

    async def _supervise(self, runner: Runner) -> None:
        """Keep a runner running: a crash is reported in its health and it restarts after a backoff."""
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                await runner.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("trigger %s failed: %s", runner.trigger.id, e)
                runner.set_health("error", f"{type(e).__name__}: {e}")
                runner.count_error(e.reason if isinstance(e, TriggerFailure) else "runner_failed")
            if time.monotonic() - started > 30:
                delay = 0.5
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.trigger_reconnect_max)

    async def create(self, function: str, kind: str, config: dict[str, Any], trigger_id: str | None = None) -> Runner:
        mod = kind_module(kind)
        if not isinstance(config, dict):
            raise TriggerConfigError("trigger options must be a JSON object")
        config = mod.validate(config)
        if hasattr(mod, "check"):
            mod.check(function, config)
        ns, fname = split(function)
        if trigger_id is None:  # (a namespace's trigger ids are held as `team-a~ID`, as its functions' names)
            trigger_id = qualify(ns, f"{fname}-{kind}-{uuid.uuid4().hex[:6]}"[-63:].lstrip("-"))
        id_ns, local_id = split(trigger_id)
        if not ID_RE.match(local_id) or id_ns != ns:
            raise TriggerConfigError(f"trigger id {local_id!r}: use 1-63 characters a-z, 0-9 and '-'")
        if trigger_id in self.runners:
            raise TriggerConfigError(f"trigger {trigger_id!r} already exists", code="trigger_exists")
        t = Trigger(id=trigger_id, function=function, kind=kind, config=config, created_at=time.time())
        runner = mod.RUNNER(t, self.ctx)
        self._deleted.discard(trigger_id)
        await self.tstore.add(t)
        if trigger_id in self.runners:  # `reconcile` saw the new row first and launched it
            return self.runners[trigger_id]
        return self._launch(t, runner)

    async def delete(self, trigger_id: str) -> bool:
        self._deleted.add(trigger_id)
        runner = await self._stop(trigger_id)
        await self.ctx.queue.topic_drop_subscriber(trigger_id)
        return await self.tstore.delete(trigger_id) or runner is not None

    async def _stop(self, trigger_id: str) -> Runner | None:
        task = self.tasks.pop(trigger_id, None)
        runner = self.runners.pop(trigger_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if runner is not None and hasattr(runner, "close"):
            with contextlib.suppress(Exception):
                await runner.close()
        return runner

    async def reconcile(self) -> int:
        """A cluster node: start the triggers other nodes added to the shared database and stop the ones they
        deleted (called by the cluster sync every pass). Returns how many it started or stopped."""
        stored = {t.id: t for t in await self.tstore.list()}
        changed = 0
        for tid, t in stored.items():
            if tid in self.runners or tid in self._deleted:
                continue
            try:
                self._launch(t)
            except Exception as e:  # an unknown kind, options this node cannot use: keep the others going
                if tid not in self._unlaunchable:
                    log.warning("trigger %s (added by another node) not started here: %s", tid, e)
                    self._unlaunchable.add(tid)
                continue
            log.info("trigger %s started (added by another node)", tid)
            changed += 1
        for tid in [i for i in self.runners if i not in stored]:
            if await self.tstore.get(tid) is not None:  # created here after the list was read
                continue
            await self._stop(tid)
            with contextlib.suppress(Exception):
                await self.ctx.queue.topic_drop_subscriber(tid)
            log.info("trigger %s stopped (deleted on another node)", tid)
            changed += 1
        self._unlaunchable &= set(stored)
        return changed

    async def delete_for(self, function: str) -> int:
        ids = [t.id for t in await self.tstore.list(function)]
        for tid in ids:
            await self.delete(tid)
        return len(ids)

    def view(self, runner: Runner) -> dict[str, Any]:
        t = runner.trigger
        out = {"id": t.id, "function": t.function, "kind": t.kind, "config": redact(t.config),
               "created_at": t.created_at,
               "health": runner.health, "delivered": runner.delivered, "dead_lettered": runner.dead_lettered,
               "errors": runner.errors, "last_error": runner.last_error}
        try:
            out.update(runner.describe())
        except Exception as e:  # describing must never break listing
            out["describe_error"] = str(e)
        return out

    def list(self, function: str | None = None) -> list[dict[str, Any]]:
        return [self.view(r) for r in self.runners.values() if function is None or r.trigger.function == function]

    def add_sink(self, prefix: str, fire: Any) -> None:
        """Triggers whose function is `<prefix>:<name>` hand their events to `fire(name, key, data)`."""
        self.ctx.sinks[prefix] = fire

    def runners_of(self, kind: str) -> list[Runner]:
        return [r for r in self.runners.values() if r.trigger.kind == kind]
