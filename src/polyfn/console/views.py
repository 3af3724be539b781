"""What the console's pages show, computed from the services' records: a function's triggers (passwords masked),
its health label, the geometry of the inline SVG charts; pure but for `trigger_rows`' reads."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from polyfn.tenancy import local

if TYPE_CHECKING:
    from polyfn.observe.metrics import FunctionStats
    from polyfn.services import Triggers
    from polyfn.storage.service import StorageService

#: Trigger kinds the console offers, each with example options (the form's default for that kind).
TRIGGER_KINDS: tuple[tuple[str, str], ...] = (
    ("cron", '{"schedule": "*/5 * * * *", "timezone": "UTC"}'),
    ("topic", '{"topic": "orders", "batch_size": 10}'),
    ("storage", '{"bucket": "uploads", "events": ["created"], "prefix": ""}'),
    ("nats", '{"url": "nats://127.0.0.1:4222", "subject": "orders.*"}'),
    ("redis", '{"url": "redis://127.0.0.1:6379/0", "stream": "orders"}'),
    ("amqp", '{"url": "amqp://guest:guest@127.0.0.1:5672/", "queue": "orders"}'),
    ("mqtt", '{"host": "127.0.0.1", "port": 1883, "topic": "sensors/#"}'),
    ("kafka", '{"bootstrap_servers": "127.0.0.1:9092", "topic": "orders"}'),
    ("log", '{"stream": "fn:other-function"}'),
    ("events", '{"type": "com.example.order.created"}'),
)
_HEALTH_CLASS = {"connected": "ok", "scheduled": "ok", "error": "bad", "connecting": "warn", "starting": "warn"}
_URL_PASSWORD = re.compile(r"(//[^/:@\s\"]*:)[^/@\s\"]+@")


def _config_text(config: dict[str, Any]) -> str:
    shown = {k: "***" if k in ("password", "secret", "sasl_password") and v else v for k, v in config.items()}
    return _URL_PASSWORD.sub(r"\1***@", json.dumps(shown, ensure_ascii=False))


def trigger_rows(triggers: Triggers | None, storage: StorageService | None, name: str) -> list[dict[str, Any]]:
    """A function's triggers for the console: kind, id, options (passwords in URLs masked), health, errors,
    next fire (cron); storage notifications included."""
    rows = []
    views = triggers.list(name) if triggers is not None else []
    for v in views:
        h = v.get("health") or {}
        state = str(h.get("state", "?"))
        rows.append({
            "id": v["id"], "kind": v["kind"], "state": state, "health_class": _HEALTH_CLASS.get(state, "idle"),
            "message": h.get("message", "") if state == "error" else "",
            "config_text": _config_text(v.get("config") or {}),
            "next_fire": v.get("next_fire_iso", ""), "delivered": v.get("delivered", 0),
            "errors": v.get("errors", 0), "last_error": v.get("last_error"),
        })
    if storage is not None:
        for t in storage.notifications.list(function=name):
            j = t.to_json()
            cfg = {k: j[k] for k in ("bucket", "events", "prefix", "suffix") if j.get(k)}
            rows.append({"id": t.id, "kind": "storage", "state": "active", "health_class": "ok", "message": "",
                         "config_text": json.dumps(cfg, ensure_ascii=False), "next_fire": "", "delivered": "-",
                         "errors": 0, "last_error": None})
    return rows


def trigger_panel(triggers: Triggers | None, storage: StorageService | None, name: str, error: str = "",
                  notice: str = "", form: dict[str, str] | None = None, list_only: bool = False) -> dict[str, Any]:
    """The context of the triggers panel (`_triggers.html`) of function `name` (its held name)."""
    return {"name": local(name), "triggers": trigger_rows(triggers, storage, name), "kinds": TRIGGER_KINDS,
            "error": error, "notice": notice, "list_only": list_only,
            "form": form or {"kind": "cron", "id": "", "options": TRIGGER_KINDS[0][1]}}


def health(fs: FunctionStats | None, init_failing: bool, now: float) -> tuple[str, str]:
    """(label, css class) of a function's health from the last 5 minutes."""
    if init_failing:
        return "failing to start", "bad"
    if fs is None:
        return "no traffic", "idle"
    w = fs.window(now, 300)
    if not w["invocations"]:
        return "no traffic", "idle"
    ratio = w["errors"] / w["invocations"]
    if ratio >= 0.5:
        return f"failing ({w['errors']}/{w['invocations']} errors)", "bad"
    if w["errors"]:
        return f"degraded ({w['errors']}/{w['invocations']} errors)", "warn"
    return "healthy", "ok"


def chart(points: list[dict[str, Any]], keys: tuple[str, ...], width: int = 360, height: int = 64) -> dict[str, Any]:
    """Polyline coordinates for an inline SVG chart of `keys` over the points (None = gap → 0)."""
    n = len(points)
    vmax = 0.0
    for p in points:
        for k in keys:
            v = p.get(k) or 0
            vmax = max(vmax, float(v))
    scale = (height - 4) / vmax if vmax > 0 else 0
    step = width / max(n - 1, 1)
    lines = []
    for k in keys:
        coords = " ".join(f"{i * step:.1f},{height - 2 - float(p.get(k) or 0) * scale:.1f}" for i, p in enumerate(points))
        lines.append({"key": k, "points": coords})
    return {"width": width, "height": height, "max": vmax, "lines": lines}


def shown(value: Any, **changes: Any) -> Any:
    """A copy of a record (FunctionInfo, Activation) with its names as a namespace's pages show them."""
    import msgspec

    return msgspec.structs.replace(value, **changes)
