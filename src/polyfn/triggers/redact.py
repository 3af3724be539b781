"""Trigger configs as shown to people: never a password (issue #18: `trigger list --json` printed broker
passwords). The stored config keeps them; every view (`GET /v1/triggers`, `polyfn trigger list`, the
console, `deploy -f --dry-run`) goes through `redact`. Pure."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
SECRET_KEYS = ("password", "secret", "token", "sasl_plain_password")
_USERINFO = re.compile(r"(//|^|,)([^/@:,]*):([^/@,]*)@")


def redact_url(value: str) -> str:
    """`amqp://guest:guest@host/` → `amqp://guest:***@host/`: the password of every `user:password@` part,
    in several comma-separated URLs (NATS) and in malformed ones too (an error message may quote them)."""
    return _USERINFO.sub(lambda m: f"{m[1]}{m[2]}:{MASK}@", value)


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with secret values masked and passwords cut out of URLs."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, str) and v and any(s in k.lower() for s in SECRET_KEYS):
            out[k] = MASK
        elif isinstance(v, str):
            out[k] = redact_url(v)
        else:
            out[k] = v
    return out
