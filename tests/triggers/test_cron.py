"""Cron schedule maths (pure): validation, time zones, missed-tick policy."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from polyfn.triggers import cron
from polyfn.triggers.base import TriggerConfigError


def ts(s: str, tz: str = "UTC") -> float:
    return dt.datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(("config", "code"), [
    ({"schedule": "* * *"}, "invalid_cron"),
    ({"schedule": "61 * * * *"}, "invalid_cron"),
    ({"schedule": "not cron"}, "invalid_cron"),
    ({}, "invalid_trigger"),
    ({"schedule": "* * * * *", "timezone": "Mars/Olympus"}, "invalid_timezone"),
    ({"schedule": "* * * * *", "missed": "burst"}, "invalid_trigger"),
    ({"schedule": "* * * * *", "bogus": 1}, "invalid_trigger"),
])
def test_invalid(config: dict, code: str) -> None:
    with pytest.raises(TriggerConfigError) as e:
        cron.validate(config)
    assert e.value.code == code


def test_valid_defaults() -> None:
    assert cron.validate({"schedule": "*/5 * * * *"}) == {
        "schedule": "*/5 * * * *", "timezone": "UTC", "missed": "skip", "data": None}


def test_next_fire_in_time_zone() -> None:
    # 08:00 every day in Shanghai is 00:00 UTC
    after = ts("2026-01-01T12:00:00")
    assert cron.next_fire("0 8 * * *", "Asia/Shanghai", after) == ts("2026-01-02T00:00:00")
    assert cron.next_fire("0 8 * * *", "UTC", after) == ts("2026-01-02T08:00:00")


def test_seconds_field() -> None:
    assert cron.next_fire("* * * * * *", "UTC", 100.0) == 101.0


def test_missed_ticks_skip_and_run_once_never_burst() -> None:
    last = ts("2026-01-01T00:00:00")
    now = ts("2026-01-01T05:30:00")  # 5 hourly ticks missed
    assert cron.plan_start("0 * * * *", "UTC", last, now, "skip") == (None, now)
    fire, cursor = cron.plan_start("0 * * * *", "UTC", last, now, "run_once")
    assert fire == ts("2026-01-01T05:00:00") and cursor == now  # one run, for the latest tick
    # nothing missed: keep the cursor
    assert cron.plan_start("0 * * * *", "UTC", last, ts("2026-01-01T00:30:00"), "run_once") == (None, last)
