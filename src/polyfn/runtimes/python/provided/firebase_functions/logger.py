"""Firebase's structured logger: entries go to the activation's log as JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Any


def _write(severity: str, *args: Any, **kwargs: Any) -> None:
    entry = {"severity": severity, "message": " ".join(str(a) for a in args), **kwargs}
    print(json.dumps(entry, default=str), file=sys.stderr if severity in ("ERROR", "WARNING") else sys.stdout)


def debug(*args: Any, **kwargs: Any) -> None:
    _write("DEBUG", *args, **kwargs)


def log(*args: Any, **kwargs: Any) -> None:
    _write("INFO", *args, **kwargs)


info = log


def warn(*args: Any, **kwargs: Any) -> None:
    _write("WARNING", *args, **kwargs)


def error(*args: Any, **kwargs: Any) -> None:
    _write("ERROR", *args, **kwargs)
