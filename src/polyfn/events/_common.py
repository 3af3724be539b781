"""Small helpers the vendor event shapes share (time formats, defaults)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

ACCOUNT_ID = "000000000000"  # polyfn's stand-in for a cloud account id
DEFAULT_REGION = "local"


def parse_time(value: str | None) -> _dt.datetime:
    if value:
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return _dt.datetime.now(_dt.UTC)


def iso_ms(value: str | None) -> str:
    """`2019-09-03T19:37:27.192Z` (AWS style: milliseconds, Z)."""
    t = parse_time(value).astimezone(_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def iso_s(value: str | None) -> str:
    """`2019-09-03T19:37:27Z` (seconds, Z)."""
    return parse_time(value).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_s(value: str | None) -> int:
    return int(parse_time(value).timestamp())


def data_of(ce: dict[str, Any]) -> dict[str, Any]:
    data = ce.get("data")
    return data if isinstance(data, dict) else {}


def messages_of(ce: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of a queue batch, or the one message of a broker event, as a list."""
    data = data_of(ce)
    if "messages" in data:
        return [m for m in data.get("messages") or [] if isinstance(m, dict)]
    return [data]
