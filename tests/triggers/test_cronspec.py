"""Strict cron validation: every field checked, the error names the field (table-driven, pure)."""

from __future__ import annotations

import pytest
from croniter import croniter

from polyfn.triggers.cronspec import CronError, check


@pytest.mark.parametrize("schedule", [
    "* * * * *", "*/5 * * * *", "0 3 * * *", "0 8 * * mon-fri", "30 9 * * 1-5", "0 0 1,15 * *", "0 0 L * *",
    "0 12 * * 5#2", "0 12 * * L5", "0 0 * * 7", "0 0 29 2 *", "0 0 31 1,2 *", "5/15 * * * *", "0 0 ? * mon",
    "0 9-17/2 * * *", "0 0 1 jan,jul *", "* * * * * *", "* * * * * */10", "0 */2 * * * 30", "0 0 30 2 1",
])
def test_accepted(schedule: str) -> None:
    out = check(schedule)
    assert croniter.is_valid(out) and out == " ".join(schedule.split())


@pytest.mark.parametrize("macro,expr", [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@YEARLY", "0 0 1 1 *")])
def test_macros(macro: str, expr: str) -> None:
    assert check(macro) == expr


@pytest.mark.parametrize("schedule,words", [
    ("*/61 * * * *", ["minute", "step 61", "1-59"]),
    ("*/0 * * * *", ["minute", "step 0"]),
    ("61 * * * *", ["minute", "61 is out of range 0-59"]),
    ("0 24 * * *", ["hour", "24", "0-23"]),
    ("0 0 0 * *", ["day-of-month", "0 is out of range 1-31"]),
    ("0 0 * 13 *", ["month", "13"]),
    ("0 0 * * 8", ["day-of-week", "8", "0-7"]),
    ("0 0 30 2 *", ["day-of-month", "30 never occurs in February"]),
    ("0 0 31 4,6 *", ["31 never occurs in April, June"]),
    ("* * * * * * *", ["7 field(s)", "year", "6 with seconds last"]),
    ("* * *", ["3 field(s)"]),
    ("* * * * * 60", ["second", "60"]),
    ("0 0 * * foo", ["day-of-week", "'foo'"]),
    ("30-10 * * * *", ["minute", "runs backwards", "30-59,0-10"]),
    ("? * * * *", ["minute", "'?' is only for"]),
    ("1,,2 * * * *", ["minute"]),
    ("@reboot", ["unknown macro"]),
    ("not cron", ["2 field(s)"]),
])
def test_refused_with_the_field_named(schedule: str, words: list[str]) -> None:
    with pytest.raises(CronError) as e:
        check(schedule)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
