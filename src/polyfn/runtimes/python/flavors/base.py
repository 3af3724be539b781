"""What every flavor shares: function metadata, the adapter interface, error payloads, HTTP helpers."""

from __future__ import annotations

import inspect
import json
import os
import time
import traceback
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
    return {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": user_stack(exc)}


def positional_arity(fn: Any) -> tuple[int, int]:
    """(required, maximum) positional parameters of `fn`; maximum is large for *args."""
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
            if k in self:
                dict.__setitem__(self, k, dict.__getitem__(self, k) + ", " + v)
            else:
                dict.__setitem__(self, k, v)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


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

    __slots__ = ("activation_id", "deadline", "function_name", "function_version", "memory_limit_in_mb", "trace_id")

    def __init__(self, inv: Invoke, meta: FunctionMeta):
        self.activation_id = inv.activation_id
        self.function_name = meta.name
        self.function_version = str(meta.revision)
        self.memory_limit_in_mb = meta.memory_mb
        self.deadline = inv.deadline
        self.trace_id = inv.trace_id

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
        self.is_async = inspect.iscoroutinefunction(handler)
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
