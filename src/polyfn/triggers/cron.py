"""Cron triggers: a schedule (5 fields, or 6 with seconds last; checked by `cronspec`), a time zone, a payload.

Each tick queues one async invocation (kind `cloudevent`, type `TYPE_TIMER`) through the durable queue, so
it gets the function's retry policy and dead-letter queue. The job id is derived from the trigger and the
tick, so a tick queued just before a crash is not queued twice. Ticks missed while the server was down are
either skipped (`missed=skip`, default) or run once (`missed=run_once`: the most recent missed tick only),
never as a burst. With PostgreSQL metadata, only the cron leader node fires (`triggers/leader.py`); the
others show `standby` and take over from the saved cursor when the leader goes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import sqlite3
import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from polyfn.call import Call
from polyfn.events.cloudevent import CONTENT_TYPE, TYPE_TIMER, new_event
from polyfn.tenancy import qualify, split
from polyfn.triggers import cronspec
from polyfn.triggers.base import Runner, TriggerConfigError, TriggerFailure, opt_str

log = logging.getLogger("polyfn.triggers.cron")
MISSED = ("skip", "run_once")


def validate(config: dict[str, Any]) -> dict[str, Any]:
    schedule = opt_str(config, "schedule", required=True)
    assert schedule is not None
    try:
        schedule = cronspec.check(schedule)
    except cronspec.CronError as e:
        raise TriggerConfigError(f"schedule: {e}", code="invalid_cron") from None
    if not croniter.is_valid(schedule):  # what the strict check let through must still compute
        raise TriggerConfigError(
            f"schedule={schedule!r} is not a valid cron expression: use 5 fields (minute hour day month weekday), "
            "e.g. '*/5 * * * *', or 6 with seconds last", code="invalid_cron")
    tz = opt_str(config, "timezone", "UTC")
    assert tz is not None
    zone(tz)
    missed = config.get("missed", "skip")
    if missed not in MISSED:
        raise TriggerConfigError(f"option missed={missed!r}: use one of {', '.join(MISSED)}")
    unknown = set(config) - {"schedule", "timezone", "missed", "data"}
    if unknown:
        raise TriggerConfigError(f"unknown cron option(s): {', '.join(sorted(unknown))}")
    return {"schedule": schedule, "timezone": tz, "missed": missed, "data": config.get("data")}


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TriggerConfigError(f"timezone={name!r} is not a known IANA time zone (e.g. UTC, Asia/Shanghai)",
                                 code="invalid_timezone") from None


def next_fire(schedule: str, tz: str, after: float) -> float:
    """The first tick strictly after epoch `after`, evaluated in time zone `tz`."""
    start = dt.datetime.fromtimestamp(after, zone(tz))
    return croniter(schedule, start).get_next(float)


def prev_fire(schedule: str, tz: str, before: float) -> float:
    start = dt.datetime.fromtimestamp(before, zone(tz))
    return croniter(schedule, start).get_prev(float)


def plan_start(schedule: str, tz: str, last: float, now: float, missed: str) -> tuple[float | None, float]:
    """At start: (a missed tick to run now or None, the cursor to schedule from). Pure."""
    due = next_fire(schedule, tz, last)
    if due > now:
        return None, last
    if missed == "run_once":
        latest = prev_fire(schedule, tz, now + 0.001)  # the most recent missed tick, never all of them
        return (latest if latest > last else due), now
    return None, now


class CronRunner(Runner):
    kind = "cron"

    def __init__(self, trigger: Any, ctx: Any):
        super().__init__(trigger, ctx)
        c = trigger.config
        self.schedule, self.tz, self.missed, self.data = c["schedule"], c["timezone"], c["missed"], c.get("data")
        self.cursor = float(trigger.state.get("last", trigger.created_at))
        self.caught_up: float | None = None  # the missed tick run at start (missed=run_once), if any

    def describe(self) -> dict[str, Any]:
        nxt = next_fire(self.schedule, self.tz, max(self.cursor, time.time()))
        return {"next_fire": nxt, "next_fire_iso": dt.datetime.fromtimestamp(nxt, zone(self.tz)).isoformat(),
                "last_tick": self.cursor, "caught_up": self.caught_up}

    async def run(self) -> None:
        leader = self.ctx.leader
        while True:
            if leader is not None and not leader.is_leader:
                self.set_health("standby")  # another node fires the ticks
                await leader.wait()
                # The previous leader's cursor, from the shared database.
                t = await self.ctx.store.get(self.trigger.id)
                if t is not None:
                    self.cursor = float(t.state.get("last", self.cursor))
            await self._lead()

    async def _lead(self) -> None:
        """Fire ticks while this node is the leader (always, embedded)."""
        leader = self.ctx.leader
        catch_up, cursor = plan_start(self.schedule, self.tz, self.cursor, time.time(), self.missed)
        if catch_up is not None:
            if leader is not None and not await leader.confirm():
                return
            self.caught_up = catch_up
            await self.fire(catch_up)
        self.cursor = cursor
        await self.save()
        self.set_health("scheduled")
        while True:
            due = next_fire(self.schedule, self.tz, self.cursor)
            while (wait := due - time.time()) > 0:
                await asyncio.sleep(min(wait, 30))
            if leader is not None and not await leader.confirm():
                return
            await self.fire(due)
            self.cursor = due
            await self.save()

    async def save(self) -> None:
        await self.ctx.store.save_state(self.trigger.id, {"last": self.cursor})

    async def fire(self, tick: float) -> None:
        when = dt.datetime.fromtimestamp(tick, zone(self.tz))
        event = new_event(TYPE_TIMER, f"/polyfn/triggers/{self.trigger.id}", {
            "trigger": self.trigger.id, "schedule": self.schedule, "timezone": self.tz,
            "scheduled_time": when.isoformat(), "payload": self.data}, time=when.astimezone(dt.UTC))
        job_id = hashlib.sha256(f"{self.trigger.id}@{tick}".encode()).hexdigest()[:32]
        ns, name = split(self.trigger.function)  # (`team-a~openwhisk:T`: a namespace's sink)
        prefix, _, target = name.partition(":")
        if target and (sink := self.ctx.sinks.get(prefix)) is not None:  # e.g. an OpenWhisk trigger's alarm
            try:
                await sink(qualify(ns, target), job_id, self.data)
            except Exception as e:
                raise TriggerFailure("fire_failed", f"could not fire {self.trigger.function}: {e}") from e
            self.delivered += 1
            self.set_health("scheduled")
            return
        if self.ctx.registry.get(self.trigger.function) is None:
            # still queued (the queue dead-letters it, so the tick is not lost without a trace), but counted
            self.count_error("function_not_found", f"function {self.trigger.function!r} does not exist")
        try:
            await self.ctx.queue.enqueue(Call(self.trigger.function, "cloudevent", "cron", body=event.to_json(),
                                              content_type=CONTENT_TYPE), job_id=job_id, check=False)
            self.delivered += 1
        except sqlite3.IntegrityError:
            pass  # queued before a crash: at most once per tick
        except Exception as e:  # the supervisor restarts the runner; the tick is run again per `missed`
            raise TriggerFailure("enqueue_failed", f"could not queue the tick: {type(e).__name__}: {e}") from e
        self.set_health("scheduled")


RUNNER = CronRunner
