"""Output helpers shared by the commands: consoles, time formats, raw writes.

Two rules keep the CLI scriptable: data goes to stdout and chatter (progress, hints, errors) to
stderr; and anything that is *the user's* bytes (invoke results, log lines) is written without Rich
markup or highlighting, so brackets or ANSI-looking text in a payload come out exactly as sent.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

#: Width used when stdout is not a terminal and COLUMNS is unset: wide enough that piped tables
#: keep one row per line (grep-able) instead of Rich's 80-column default wrapping cells.
PIPE_WIDTH = 200


def _width(stream: Any) -> int | None:
    if os.environ.get("COLUMNS"):
        return None  # Rich honours COLUMNS itself
    try:
        return None if stream.isatty() else PIPE_WIDTH
    except (AttributeError, ValueError):
        return PIPE_WIDTH


def out() -> Console:
    """A console on the *current* stdout (created per call so test runners' redirection applies)."""
    return Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))


def err() -> Console:
    """A console on the current stderr, for progress, notices and errors."""
    return Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def write_json(value: Any) -> None:
    """Machine-readable output for `--json`: plain JSON on stdout, no Rich involved."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def write_raw(body: bytes) -> None:
    """Write a function's answer byte for byte; add a newline only for a human at a terminal.

    Piped output stays byte-exact (`polyfn invoke f > out.bin`); on a TTY a missing final newline
    would glue the shell prompt to the result.
    """
    stream = sys.stdout
    stream.flush()
    newline = bool(body) and not body.endswith(b"\n") and _isatty(stream)
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        buffer.write(body + b"\n" if newline else body)
        buffer.flush()
    else:  # a text-only stream (rare): decode leniently rather than fail
        stream.write(body.decode("utf-8", "replace") + ("\n" if newline else ""))
        stream.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def local_time(ts: float | None) -> str:
    """Seconds since the epoch as local `YYYY-MM-DD HH:MM:SS` (tables); `-` when unknown."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def log_time(ts: float | None) -> str:
    """Local time with milliseconds, one token (`2025-11-26T23:45:01.123`) so log lines split cleanly."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).isoformat(timespec="milliseconds")


def ms(value: Any) -> str:
    """A duration in milliseconds for tables: one decimal below 100 ms, whole numbers above."""
    if value is None:
        return "-"
    number = float(value)
    return f"{number:.1f}" if number < 100 else f"{number:.0f}"


def print_deployed(function: Mapping[str, Any], url: str) -> None:
    """One success line, the function's URL, and what the server inferred."""
    spec = function.get("spec") or {}
    console = out()
    console.print(
        Text.assemble(
            ("deployed ", "green"),
            (str(function.get("name", "?")), "bold"),
            f" revision {function.get('revision', '?')}"
            f" (flavor {spec.get('flavor', '?')}, handler {spec.get('handler', '?')})",
        )
    )
    console.print(Text(f"  url: {url}"))
    detected = dict(function.get("detected") or {})
    why = detected.pop("why", None)
    if detected:
        described = ", ".join(f"{key}={value}" for key, value in detected.items())
        console.print(Text(f"  detected: {described}" + (f" (from {why})" if why else ""), style="dim"))
