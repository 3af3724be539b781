"""OpenWhisk's vocabulary shared by its modules (openwhisk*.py): the namespace it reports, the annotations that
keep an action's OpenWhisk fields on a polyfn function (an action's default parameters), its names, its error,
a list's paging."""

from __future__ import annotations

import contextvars
import json
from typing import Any

from fastapi import Request

from polyfn import jsontext
from polyfn.model import FunctionInfo
from polyfn.tenancy import DEFAULT

NAMESPACE = "polyfn"
#: the polyfn namespace an OpenWhisk request acts in (`WhiskApi.auth`, a web action's URL, an alarm's trigger):
#: each request runs in its own task. OpenWhisk's `polyfn` (and `_` for the admin) is polyfn's `default`.
NS: contextvars.ContextVar[str] = contextvars.ContextVar("openwhisk_namespace", default=DEFAULT)


def to_openwhisk(namespace: str) -> str:
    """The OpenWhisk name of a polyfn namespace (`default` is `polyfn`)."""
    return NAMESPACE if namespace == DEFAULT else namespace


def to_polyfn(ow_namespace: str) -> str:
    """The polyfn namespace of an OpenWhisk one (`polyfn` is `default`)."""
    return DEFAULT if ow_namespace == NAMESPACE else ow_namespace


A_NAME, A_PARAMS, A_ANN, A_KIND = "openwhisk/name", "openwhisk/parameters", "openwhisk/annotations", "openwhisk/kind"


class WhiskError(Exception):
    """Answered as OpenWhisk does: `{"error": message, "code": <id>}` with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A request body that must be a JSON object (empty: `{}`); `what` names it in the 400."""
    try:
        value = jsontext.loads_text(raw) if raw else {}
    except ValueError:
        raise WhiskError(400, f"The request content was malformed: the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise WhiskError(400, f"The request content was malformed: the {what} must be an object")
    return value


def polyfn_name(name: str) -> str:
    """An OpenWhisk action name (`pkg/a_b`) as a polyfn function name (`pkg-a-b`)."""
    n = name.replace("/", "-").replace("_", "-").lower()
    return n if n[:1].isalpha() else "ow-" + n


def annotation(info: FunctionInfo, key: str, default: Any) -> Any:
    """A JSON annotation of the function (`default` when absent or not JSON)."""
    raw = info.spec.annotations.get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def defaults(info: FunctionInfo) -> dict[str, Any]:
    return {p["key"]: p.get("value") for p in annotation(info, A_PARAMS, []) if isinstance(p, dict) and "key" in p}


def paging(request: Request) -> tuple[int, int]:
    try:
        skip = max(0, int(request.query_params.get("skip", "0")))
        limit = int(request.query_params.get("limit", "30")) or 200
    except ValueError:
        raise WhiskError(400, "skip and limit must be integers") from None
    return skip, min(max(limit, 1), 200)
