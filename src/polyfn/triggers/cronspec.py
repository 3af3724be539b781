"""Strict cron expressions: what polyfn accepts as a schedule, and why it refuses the rest (pure).

croniter (which computes the ticks) is lenient: it took `*/61 * * * *`, a 7-field expression (read so that it
fired every second) and `0 0 30 2 *` (February 30, never). Here every field is checked on its own, and an
error names the field, the value and the allowed range:

* 5 fields `minute hour day-of-month month day-of-week`, or exactly 6 with **seconds last** (croniter's
  form); nothing else — a 7th (Quartz's year) is refused;
* each field a comma list of `*`, `?` (day fields), `N`, `A-B`, with an optional `/STEP` (1 ≤ step ≤ the
  field's span); month and weekday names (`jan`, `mon-fri`); weekday 0-7 (0 and 7 are Sunday); `L` (last day
  of the month), `N#K` (the K-th weekday N of the month) and `LN` (the last weekday N) as croniter has them;
* a day of month that no listed month has (Feb 30, Apr 31) when the weekday field does not also allow days;
* `@hourly`, `@daily` / `@midnight`, `@weekly`, `@monthly`, `@yearly` / `@annually`;
* the shortest interval is MIN_INTERVAL: one second, with the 6-field form (`* * * * * *`); a minute with 5.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

MIN_INTERVAL = 1.0  # seconds between two ticks, at least: the seconds field's unit (docs/triggers.md)

MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
          "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
DAYS = {d.lower(): (i + 1) % 7 for i, d in enumerate(calendar.day_abbr)}  # mon=1 … sun=0


@dataclass(frozen=True)
class Field:
    name: str
    lo: int
    hi: int
    names: dict[str, int]


MINUTE = Field("minute", 0, 59, {})
HOUR = Field("hour", 0, 23, {})
DOM = Field("day-of-month", 1, 31, {})
MONTH = Field("month", 1, 12, MONTHS)
DOW = Field("day-of-week", 0, 7, DAYS)
SECOND = Field("second", 0, 59, {})
FIVE = (MINUTE, HOUR, DOM, MONTH, DOW)

_ITEM = re.compile(r"^(?P<base>\*|\?|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


class CronError(ValueError):
    """A schedule polyfn refuses; the message names the field and the fix."""


def _value(text: str, f: Field, expr: str) -> int:
    v = f.names.get(text) if not text.isdigit() else int(text)
    if v is None:
        names = f" or a name ({', '.join(list(f.names)[:3])} …)" if f.names else ""
        raise CronError(f"{f.name} field {text!r} of {expr!r}: not a number{names}")
    if not f.lo <= v <= f.hi:
        raise CronError(f"{f.name} field of {expr!r}: {v} is out of range {f.lo}-{f.hi}")
    return v


def _field(text: str, f: Field, expr: str) -> set[int] | None:
    """The values a field allows (None: every value, `*`/`?`), or CronError."""
    out: set[int] = set()
    every = False
    for item in text.lower().split(","):
        if f is DOM and item == "l":
            out.update(range(28, 32))  # the last day: 28-31 depending on the month
            continue
        if f is DOW and (m := re.fullmatch(r"([a-z0-9]+)#[1-5]|l([a-z0-9]+)", item)):
            out.add(_value(m[1] or m[2], f, expr) % 7)
            continue
        m = _ITEM.match(item)
        if not m:
            raise CronError(f"{f.name} field {item!r} of {expr!r}: use *, N, A-B, */STEP or A-B/STEP "
                            f"({f.lo}-{f.hi})")
        base, step_text = m["base"], m["step"]
        if base == "?" and f not in (DOM, DOW):
            raise CronError(f"{f.name} field of {expr!r}: '?' is only for day-of-month and day-of-week")
        span = f.hi - f.lo if f is not DOW else 6
        step = int(step_text) if step_text else 1
        if step_text and not 1 <= step <= span:
            raise CronError(f"{f.name} field {item!r} of {expr!r}: step {step} must be 1-{span} "
                            f"(the field's values are {f.lo}-{f.hi})")
        if base in ("*", "?"):
            lo, hi = f.lo, (f.hi if f is not DOW else 6)
            if step == 1:
                every = True
                continue
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = _value(a, f, expr), _value(b, f, expr)
            if lo > hi:
                raise CronError(f"{f.name} field {item!r} of {expr!r}: the range runs backwards "
                                f"({lo} > {hi}); write it as two ranges, e.g. {lo}-{f.hi},{f.lo}-{hi}"
                                if f is not DOW else
                                f"{f.name} field {item!r} of {expr!r}: the range runs backwards ({lo} > {hi})")
        else:
            lo = _value(base, f, expr)
            hi = f.hi if step_text else lo  # `5/15`: from 5 on, every 15
        out.update(v % 7 if f is DOW else v for v in range(lo, hi + 1, step))
    return None if every else out


def check(schedule: str) -> str:
    """`schedule` as croniter should read it (macros expanded), or CronError naming what is wrong."""
    expr = " ".join(schedule.split())
    if expr.startswith("@"):
        if expr.lower() not in MACROS:
            raise CronError(f"{expr!r}: unknown macro; use one of {', '.join(MACROS)}")
        return MACROS[expr.lower()]
    parts = expr.split(" ")
    if len(parts) not in (5, 6):
        extra = " (a 7th field, the year of Quartz/Tencent cron, is not supported)" if len(parts) == 7 else ""
        raise CronError(f"{expr!r} has {len(parts)} field(s){extra}: use 5 fields (minute hour day-of-month month "
                        "day-of-week), e.g. '*/5 * * * *', or 6 with seconds last, e.g. '* * * * * */10'")
    fields = (*FIVE, SECOND)[:len(parts)]
    values = [_field(p, f, expr) for p, f in zip(parts, fields, strict=True)]
    dom, month, dow = values[2], values[3], values[4]
    if dom is not None and dow is None:
        months = month or set(range(1, 13))
        longest = max(29 if m == 2 else calendar.monthrange(2001, m)[1] for m in months)
        if min(dom) > longest:
            names = ", ".join(calendar.month_name[m] for m in sorted(months))
            raise CronError(f"day-of-month field of {expr!r}: day {min(dom)} never occurs in {names}; "
                            "the schedule would never fire")
    return expr

