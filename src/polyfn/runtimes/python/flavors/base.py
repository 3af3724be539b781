"""What every flavor shares: function metadata, the adapter interface, error payloads, HTTP helpers."""

from __future__ import annotations

import errno
import inspect
import json
import os
import time
import traceback
import types
from typing import Any

from polyfn.protocol import Invoke

RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FunctionMeta:
    """Static facts about the function an instance serves (the same for every invocation)."""

    __slots__ = ("env", "handler", "memory_mb", "name", "revision", "timeout")

    def __init__(self, name: str, revision: int, handler: str, memory_mb: int, timeout: float, env: dict[str, str]):
        self.name = name
        self.revision = revision
        self.handler = handler
        self.memory_mb = memory_mb
        self.timeout = timeout
        self.env = env


class HandlerError(Exception):
    """A typed init failure (import error, handler not found, wrong signature)."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []

    def payload(self) -> dict[str, Any]:
        return {"errorType": self.error_type, "errorMessage": self.message, "stackTrace": self.stack}


def user_stack(exc: BaseException) -> list[str]:
    """The traceback of `exc` with polyfn's own frames trimmed and paths relative to the code directory
    (the instance's working directory): users see only their code, not where the node keeps it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(RUNTIME_DIR)]
    prefix = os.getcwd() + os.sep
    for f in frames:
        if f.filename.startswith(prefix):
            f.filename = f.filename[len(prefix):]
    return [line.rstrip("\n") for line in traceback.format_list(frames)]


def error_payload(exc: BaseException) -> dict[str, Any]:
    """Lambda's error shape, the de-facto standard: errorType, errorMessage, stackTrace."""
    return {"errorType": type(exc).__name__, "errorMessage": str(exc) + storage_full(exc),
            "stackTrace": user_stack(exc)}


def storage_full(exc: BaseException) -> str:
    """A note naming the setting when `exc` (or what caused it, or a program's output it quotes) is "No
    space left on device": the only writable place is /tmp, sized by the function's ephemeral storage."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return ""
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left on device" in str(seen):
            break
        seen = seen.__cause__ or seen.__context__
    else:
        return ""
    try:
        st = os.statvfs("/tmp")
        size = f"{st.f_blocks * st.f_frsize // (1024 * 1024)} MB"
    except OSError:
        size = "its size"
    return (f" [polyfn: /tmp is full — the function's ephemeral storage is {size}; raise it with "
            "`polyfn deploy --ephemeral-storage MB` (up to 10240; /tmp is memory-backed: raise --memory too)]")


def positional_arity(fn: Any) -> tuple[int, int]:
    """(required, maximum) positional parameters of `fn`; maximum is large for *args.

    A plain function (no `__wrapped__`/`__signature__` for `inspect.signature` to follow) is read from its
    code object: the same answer without `inspect.signature`'s machinery, whose first run in a forked
    instance writes to ~0.1 MB of pages shared with the zygote (docs/performance.md, "Density")."""
    if type(fn) is types.FunctionType and not hasattr(fn, "__wrapped__") and not hasattr(fn, "__signature__"):
        code = fn.__code__
        if code.co_flags & inspect.CO_VARARGS:
            return code.co_argcount - len(fn.__defaults__ or ()), 99
        return code.co_argcount - len(fn.__defaults__ or ()), code.co_argcount
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 0, 99
    req = mx = 0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            mx += 1
            if p.default is p.empty:
                req += 1
        elif p.kind is p.VAR_POSITIONAL:
            mx = 99
    return req, mx


def check_arity(fn: Any, n: int, convention: str) -> None:
    req, mx = positional_arity(fn)
    if not (req <= n <= mx):
        raise HandlerError(
            "Runtime.HandlerSignature",
            f"handler {getattr(fn, '__name__', fn)!r} takes {req}..{mx} positional arguments, "
            f"but the {convention} convention passes {n}",
        )


class Headers(dict):
    """Case-insensitive, lower-cased header mapping (first value wins for reads; all kept in `raw`)."""

    def __init__(self, raw: list[tuple[str, str]]):
        super().__init__()
        self.raw = raw
        for k, v in raw:
            k = k.lower()
            if dict.__contains__(self, k):  # (not `in`: this class's own __contains__, a Python call, lowers again)
                dict.__setitem__(self, k, dict.__getitem__(self, k) + ", " + v)
            else:
                dict.__setitem__(self, k, v)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


class CaseInsensitiveDict(dict):
    """A JSON-serialisable dict whose string keys also match in any case (`event['headers']['Content-Type']`
    works although HTTP/1.1 servers hand polyfn lower-cased names). Keys are stored as given."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lower = {k.lower(): k for k in self if isinstance(k, str)}

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self._lower[key.lower()] = key

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        k = self._key(key)
        if dict.__contains__(self, k):
            return dict.__getitem__(self, k)
        self[key] = default
        return default

    def _key(self, key: Any) -> Any:
        return self._lower.get(key.lower(), key) if isinstance(key, str) else key

    def __getitem__(self, key: Any) -> Any:
        return dict.__getitem__(self, self._key(key))

    def get(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, self._key(key), default)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._key(key))


STREAM_CT = [("content-type", "application/octet-stream")]  # (Lambda's default for a streamed response)
_GENERATORS = (types.GeneratorType, types.AsyncGeneratorType)
_PLAIN = frozenset({str, bytes, int, float, bool, list, type(None)})


def _is_stream(value: Any) -> bool:
    t = type(value)
    return t in _GENERATORS or hasattr(t, "__polyfn_stream__")


def stream_parts(value: Any) -> tuple[int, list[tuple[str, str]], Any] | None:
    """(status, headers, chunks) when a handler's return value is a streamed response, else None: a generator
    or async generator (of bytes or str); a `(generator, status[, headers])` tuple; a `{statusCode, headers,
    body: generator}` dict; or a `polyfn_stream` response (`StreamingResponse`, `sse(...)`: any object with a
    `__polyfn_stream__()` method returning those three). Any other value costs one type check."""
    t = type(value)
    if t in _PLAIN:
        return None
    if t in _GENERATORS:
        return 200, STREAM_CT, value
    if t is dict:
        body = value.get("body")
        if "statusCode" not in value or not _is_stream(body):
            return None
        status, headers, chunks = stream_parts(body)  # type: ignore[misc]
        extra = [(str(k), str(v)) for k, v in (value.get("headers") or {}).items()]
        extra += [("set-cookie", str(c)) for c in value.get("cookies") or []]
        return int(value["statusCode"]), merge_headers(headers, extra), chunks
    if t is tuple:
        if not (2 <= len(value) <= 3 and _is_stream(value[0]) and isinstance(value[1], int)):
            return None
        _, headers, chunks = stream_parts(value[0])  # type: ignore[misc]
        extra = [(str(k), str(v)) for k, v in value[2].items()] if len(value) == 3 and value[2] else []
        return value[1], merge_headers(headers, extra), chunks
    method = getattr(t, "__polyfn_stream__", None)
    if method is not None:
        status, headers, chunks = method(value)
        return int(status), [(str(k), str(v)) for k, v in (headers.items() if isinstance(headers, dict) else headers)], chunks
    return None


JSON_CT = [("content-type", "application/json")]
TEXT_CT = [("content-type", "text/plain; charset=utf-8")]
BINARY_CT = [("content-type", "application/octet-stream")]


def parse_event_payload(inv: Invoke) -> Any:
    """An event payload as vendors pass it: parsed JSON when it is JSON, else the raw bytes."""
    body = inv.body
    if not body:
        return {}
    ct = inv.content_type
    if not ct or "json" in ct:
        try:
            return json.loads(body)
        except ValueError:
            pass
    return body


def encode_value(value: Any) -> tuple[list[tuple[str, str]], bytes]:
    """A Python return value as an HTTP body: bytes as is, str as text, anything else as JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return BINARY_CT, bytes(value)
    if isinstance(value, str):
        return TEXT_CT, value.encode()
    return JSON_CT, json.dumps(value, default=str).encode()


class Context:
    """polyfn's own context object (native flavor); vendor flavors build their own."""

    __slots__ = ("activation_id", "deadline", "function_name", "function_version", "identity", "memory_limit_in_mb",
                 "trace_id")

    def __init__(self, inv: Invoke, meta: FunctionMeta):
        self.activation_id = inv.activation_id
        self.function_name = meta.name
        self.function_version = str(meta.revision)
        self.memory_limit_in_mb = meta.memory_mb
        self.deadline = inv.deadline
        self.trace_id = inv.trace_id
        # the signed-in app user behind the call (polyfn.apps): {app, appid, uid, openid, unionid, email,
        # provider, claims, token}, or None
        self.identity = inv.identity

    @property
    def traceparent(self) -> str:
        """W3C `traceparent` of this invocation's span: pass it on to continue the trace."""
        return f"00-{self.trace_id}-{self.activation_id[:16]}-01"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


class Adapter:
    """Base class of a flavor adapter.

    `args(inv)` builds the positional arguments for the handler; `respond(inv, value)` maps the return
    value to (status, headers, body); `fail(inv, exc)` maps an exception to (status, headers, body, error).
    `check()` validates the handler's shape at load time and raises `HandlerError` naming the convention.
    """

    convention = "polyfn"

    def __init__(self, handler: Any, meta: FunctionMeta):
        self.handler = handler
        self.meta = meta
        # (a plain function's flag read directly: inspect's path, run first in a forked instance, copies pages)
        self.is_async = (bool(handler.__code__.co_flags & inspect.CO_COROUTINE) if type(handler) is types.FunctionType
                         else inspect.iscoroutinefunction(handler))
        self.check()

    def check(self) -> None:
        pass

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        raise NotImplementedError

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        headers, body = encode_value(value)
        return 200, headers, body

    def fail(self, inv: Invoke, exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        err = error_payload(exc)
        return 500, JSON_CT, json.dumps(err).encode(), err


# --- helpers shared by the vendor flavors ---------------------------------------------------------

_TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv", "html")


def is_text(content_type: str, body: bytes) -> bool:
    """Would a vendor gateway pass this body as a string (True) or base64-encode it (False)?
    Text when the content type is textual (or absent) and the bytes are valid UTF-8."""
    if not body:
        return True
    ct = content_type.lower()
    if ct and not any(t in ct for t in _TEXT_TYPES):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def body_string(content_type: str, body: bytes) -> tuple[str, bool]:
    """(body as str, is_base64) the way API gateways put bodies into JSON events."""
    import base64

    if is_text(content_type, body):
        return body.decode("utf-8"), False
    return base64.b64encode(body).decode("ascii"), True


def decode_body(body: Any, is_base64: bool) -> bytes:
    """A response body from an API-gateway-style result dict back to bytes."""
    import base64

    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if not isinstance(body, str):
        body = json.dumps(body)
    if is_base64:
        return base64.b64decode(body)
    return body.encode("utf-8")


def cloudevent(inv: Invoke) -> dict[str, Any]:
    """The CloudEvent of a `cloudevent` invocation as a structured-mode dict (`data_base64` decoded
    into `data` as bytes)."""
    ce = json.loads(inv.body) if inv.body else {}
    if "data_base64" in ce and "data" not in ce:
        import base64

        ce["data"] = base64.b64decode(ce.pop("data_base64"))
    return ce


def query_params(query: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(query, keep_blank_values=True) if query else {}


def merge_headers(base_headers: list[tuple[str, str]], extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`extra` headers replace same-named ones in `base_headers` (case-insensitive)."""
    if not extra:
        return base_headers
    keys = {k.lower() for k, _ in extra}
    return [h for h in base_headers if h[0].lower() not in keys] + extra


def first_param_names(fn: Any) -> list[str]:
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []
