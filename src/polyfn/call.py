"""One invocation as a value, from its ingress to the instance frame: `Call`.

Every ingress (the `/fn/` gateway, `/v1/…/invoke`, the Lambda/OpenFaaS/OpenWhisk faces, triggers, the async
queue, workflows, the app platform) makes one `Call` and hands it to `Invoker.call`; admission
(`Invoker.admit`), the instance frame (`Call.frame`) and the activation record read it. Nothing re-explodes it
into loose arguments on the way. Like of-watchdog's `FunctionRequest` and Nuclio's `Event`.

`headers` are `(name, value)` text pairs, as the instance frame carries them (`protocol.Invoke`): the gateway
decodes the request's header bytes once (latin-1), and nothing converts them again before the frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from polyfn.protocol import Invoke

if TYPE_CHECKING:
    from polyfn.model import Revision


class Call:
    """What is called and with what. `function` by name; `kind` says how the instance reads the rest ("http": a
    request through the gateway, "event": a raw payload, "cloudevent": a trigger's structured CloudEvent);
    `trigger` names the ingress (the activation's `trigger`). `trace_id`/`parent_id` continue the caller's W3C
    trace; `activation_id` is given by the queue and triggers (the same for every attempt: an idempotency
    key); `revision` pins a published version or alias; `identity` is the end user the node verified.
    `active` is the registry entry when the ingress already looked the function up (one lookup per call).
    `stream`: the ingress relays a streamed response as it comes (the gateway, the Lambda API's
    InvokeWithResponseStream); otherwise a function's stream is read whole into the Outcome's body."""

    __slots__ = ("activation_id", "active", "body", "content_type", "function", "headers", "identity", "kind",
                 "method", "parent_id", "path", "query", "revision", "stream", "trace_id", "trigger")

    def __init__(self, function: str, kind: str = "event", trigger: str = "invoke", method: str = "POST",
                 path: str = "/", query: str = "", headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                 content_type: str = "", trace_id: str = "", parent_id: str = "", activation_id: str = "",
                 revision: Revision | None = None, identity: dict[str, Any] | None = None, active: Any = None,
                 stream: bool = False):
        self.function = function
        self.kind = kind
        self.trigger = trigger
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers if headers is not None else []
        self.body = body
        self.content_type = content_type
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.activation_id = activation_id
        self.revision = revision
        self.identity = identity
        self.active = active
        self.stream = stream

    def frame(self, activation_id: str, deadline: float, trace_id: str) -> Invoke:
        """The `Invoke` frame an instance receives (its sequence number is set by the instance handle)."""
        return Invoke(0, activation_id, self.kind, deadline, self.method, self.path, self.query, self.headers,
                      self.body, self.content_type, trace_id, self.identity)

    def __repr__(self) -> str:
        return (f"Call({self.function!r}, kind={self.kind!r}, trigger={self.trigger!r}, {self.method} {self.path}"
                f"{'?' + self.query if self.query else ''}, {len(self.body)} bytes)")
