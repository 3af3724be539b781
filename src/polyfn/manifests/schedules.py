"""Vendor schedule expressions → one shape: `{"cron": "<5-field cron>", "timezone": tz}` or `{"every": seconds}`.

AWS `rate(5 minutes)` / `cron(0 12 * * ? *)` (6 fields, `?`, day-of-week 1 = Sunday); OpenFaaS
cron-connector (standard 5 fields); Azure NCRONTAB (6 fields, seconds first) or a TimeSpan `hh:mm:ss`;
Aliyun `@every 5m` or 6-field cron with seconds (optionally `CRON_TZ=...`); Tencent 7 fields (seconds first,
year last). Anything else raises ValueError with the reason.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds_field(sec: str, rest: list[str], expr: str) -> dict[str, Any]:
    """A seconds-first cron: seconds 0 → plain cron; `*/N` with every other field `*` → every N s."""
    if sec in ("0", "00"):
        return {"cron": " ".join(rest)}
    m = re.match(r"^(?:\*|0)/(\d+)$", sec)
    if m and all(f == "*" for f in rest):
        return {"every": int(m[1])}
    raise ValueError(f"{expr!r}: polyfn schedules have minute resolution (seconds field {sec!r})")


def aws(expr: str) -> dict[str, Any]:
    e = expr.strip()
    m = re.match(r"^rate\(\s*(\d+)\s+(second|minute|hour|day)s?\s*\)$", e)
    if m:
        return {"every": int(m[1]) * _UNITS[m[2]]}
    m = re.match(r"^cron\((.*)\)$", e)
    if not m:
        raise ValueError(f"{expr!r} is neither rate(...) nor cron(...)")
    fields = m[1].split()
    if len(fields) != 6:
        raise ValueError(f"{expr!r}: AWS cron has 6 fields (minutes hours day month weekday year)")
    minute, hour, dom, month, dow, year = fields
    if year not in ("*", "?"):
        raise ValueError(f"{expr!r}: a year field other than * is not supported")
    dow = re.sub(r"\d", lambda d: str((int(d[0]) - 1) % 7), dow)  # AWS 1-7 = SUN-SAT → 0-6
    return {"cron": " ".join(f.replace("?", "*") for f in (minute, hour, dom, month, dow))}


def cron5(expr: str) -> dict[str, Any]:
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} is not a 5-field cron expression")
    return {"cron": " ".join(fields)}


def azure(expr: str) -> dict[str, Any]:
    e = expr.strip()
    m = re.match(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$", e)
    if m:
        days = int(m[1] or 0)
        return {"every": days * 86400 + int(m[2]) * 3600 + int(m[3]) * 60 + int(m[4])}
    fields = e.split()
    if len(fields) != 6:
        raise ValueError(f"{expr!r}: Azure NCRONTAB has 6 fields (second minute hour day month weekday)")
    return _seconds_field(fields[0], fields[1:], expr)


def aliyun(expr: str) -> dict[str, Any]:
    e = expr.strip()
    m = re.match(r"^@every\s+((?:\d+[hms])+)$", e)
    if m:
        return {"every": sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([hms])", m[1]))}
    tz = None
    m = re.match(r"^CRON_TZ=(\S+)\s+(.*)$", e)
    if m:
        tz, e = m[1], m[2]
    fields = e.split()
    if len(fields) != 6:
        raise ValueError(f"{expr!r}: Aliyun cron has 6 fields (second minute hour day month weekday)")
    out = _seconds_field(fields[0], [f.replace("?", "*") for f in fields[1:]], expr)
    if tz:
        out["timezone"] = tz
    return out


def tencent(expr: str) -> dict[str, Any]:
    fields = expr.split()
    if len(fields) != 7:
        raise ValueError(f"{expr!r}: Tencent cron has 7 fields (second minute hour day month weekday year)")
    if fields[6] not in ("*", "?"):
        raise ValueError(f"{expr!r}: a year field other than * is not supported")
    return _seconds_field(fields[0], [f.replace("?", "*") for f in fields[1:6]], expr)
