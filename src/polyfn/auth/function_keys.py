"""Who may call a function from outside: the one check of a function's `auth` setting, for every public ingress.

A function deployed with `auth: key` answers only callers holding a key of scope `invoke` for it (Azure's
function keys: the `x-functions-key` header or the `code` query parameter); one with `auth: app` answers only an
app's signed-in users (through `/app/ENV/call/NAME`, which sets the call's identity). The rule is the function's,
not the route's: `/fn/NAME`, OpenFaaS's `/function/NAME` and `/async-function/NAME` and OpenWhisk's web actions all
ask here, so no vendor face is a way around it. Internal triggers (cron, brokers, storage, the queue) never pass
through a public ingress and are not asked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from polyfn.auth.keys import allows


def refusal(spec: Any, name: str, query: str, headers: list[tuple[str, str]], keys: Any) -> tuple[int, str, str] | None:
    """(status, code, message) when an outside caller may not call the function; None when it may.
    `headers` are lower-cased text pairs, `query` the raw query string, `keys` the node's KeyRing (or None)."""
    if spec.auth == "key":
        token = next((v for k, v in headers if k == "x-functions-key"), "")
        if not token:
            token = (parse_qs(query).get("code") or [""])[0]
        key = keys.verify(token) if token and keys is not None else None
        if key is None or not allows(key, "invoke", name):
            return (401, "unauthorized", f"function {name!r} needs a key with scope 'invoke' in the x-functions-key "
                    "header or the code query parameter")
    elif spec.auth == "app":
        return (401, "app_token_required", f"function {name!r} is for an app's signed-in users: call it as "
                f"POST /app/ENV/call/{name} with the user's token (wx.cloud.callFunction does)")
    return None
