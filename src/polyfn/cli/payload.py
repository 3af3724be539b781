"""The payload of `invoke`, `publish` and `workflow start`: `--data` as JSON, `@FILE` or `-` (stdin)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def read_payload(data: str, raw: bool) -> bytes:
    """Resolve `--data` (`JSON`, `@FILE` or `-` for stdin) and check it is JSON unless `--raw`.

    Checking locally turns a shell-quoting slip into a usage error with the parser's position,
    instead of a confusing failure inside the function.
    """
    if data == "-":
        stream = getattr(sys.stdin, "buffer", None)
        payload = stream.read() if stream is not None else sys.stdin.read().encode()
    elif data.startswith("@"):
        file = Path(data[1:]).expanduser()
        try:
            payload = file.read_bytes()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {file}: {exc.strerror or exc}", param_hint="'--data'"
            ) from exc
    else:
        payload = data.encode("utf-8")
    if not raw:
        try:
            json.loads(payload)
        except ValueError as exc:
            raise typer.BadParameter(
                f"not valid JSON ({exc}); pass --raw to send it as bytes", param_hint="'--data'"
            ) from exc
    return payload
