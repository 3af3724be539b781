"""The platform's own errors: one typed exception, raised anywhere below the faces and serialised once, at the edge.

A layer that refuses a request (authorisation, the async queue, the admission of a call) raises `PolyfnError`
with the HTTP status and the stable `code` a client can branch on; the face that received the request turns it
into its wire shape (`api/errors.py`: `{"error": {"code", "message"}}` with `X-Polyfn-Error`). Nothing below the
faces imports a web framework or writes JSON for an error.
"""

from __future__ import annotations

from typing import Any


class PolyfnError(Exception):
    """A refusal with an HTTP status, a stable code (`function_not_found`, `payload_too_large`, …) and a message
    that says what to do next; `headers` go on the response (`Retry-After`, `WWW-Authenticate`)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra  # more fields of the error object (a quota's name, limit and use …)


#: The one table of the platform's error codes: code → (HTTP status or statuses, when). Every refusal the node makes uses a
#: code from here with its status (tests/unit/test_error_codes.py reads the source to hold every raise to it);
#: docs/api.md, "Errors", is this table for users. Vendor faces answer in their own shapes (Lambda's
#: `ResourceNotFoundException`, …) and are not listed.
CODES: dict[str, tuple[int | tuple[int, ...], str]] = {
    # bad input
    "invalid_request": (400, "a request that does not parse or names no valid option"),
    "invalid_json": (400, "a body that is not valid JSON (or nests too deeply)"),
    "invalid_name": (400, "a function, site, table or key name the platform does not take"),
    "invalid_spec": (400, "a deploy spec the platform does not take"),
    "invalid_allow_net": (400, "an allow_net entry that does not parse, or a range no allow-list opens"),
    "invalid_zip": (400, "a code archive that is not a zip"),
    "unsafe_path": (400, "a path in the code archive that leaves it"),
    "syntax_error": (400, "the handler module does not compile"),
    "handler_not_found": (400, "no handler where the spec says"),
    "ambiguous_handler": (400, "several candidate handlers and none named"),
    "module_not_found": (400, "the handler module is missing"),
    "dependency_install_failed": (400, "requirements.txt or package.json failed to install"),
    "build_failed": ((400, 500), "compiled code did not build (500: the platform's own shims did not)"),
    "unsupported_binding": (400, "a C# function binding polyfn does not serve"),
    "unknown_event_kind": (400, "an explicit event kind the node does not build"),
    "invalid_cloudevent": (400, "a body that is not a CloudEvent"),
    "invalid_callback_url": (400, "an X-Callback-Url that does not parse or that the policy refuses"),
    "invalid_trigger": (400, "a trigger definition the node does not take"),
    "invalid_schedule": (400, "a cron schedule that does not parse"),
    "invalid_scope": (400, "a key scope that does not exist"),
    "invalid_definition": (400, "a workflow definition that does not validate"),
    "unknown_price_table": (400, "a price table the node does not ship (GET /v1/usage?prices=)"),
    "invalid_grep": (400, "a log grep pattern that is not a regular expression"),
    "invalid_app": (400, "app settings the platform does not take"),
    "websocket_unsupported": (400, "a WebSocket upgrade at /fn/ of a function that is not an http-runtime server"),
    "h2c_unsupported": (400, "HTTP/2 with prior knowledge for a path that is not /fn/NAME of a function deployed with h2c"),
    "h2c_other_function": (421, "an HTTP/2 stream naming another function than the one its h2c connection is bound to"),
    "invalid_namespace": (400, "a namespace name the platform does not take (or one that cannot be deleted)"),
    "invalid_quota": (400, "an unknown quota, or a value out of its range"),
    # who may call
    "unauthorized": (401, "a missing, wrong or revoked key"),
    "app_token_required": (401, "an app-only function called without a signed-in user"),
    "forbidden": (403, "the key's scope does not allow this"),
    "origin_not_allowed": (403, "a browser origin the app does not allow"),
    "not_namespaced": (403, "an API that is not namespaced yet, used outside the default namespace"),
    # unknown names
    "not_found": (404, "an unknown path"),
    "function_not_found": (404, "an unknown function"),
    "activation_not_found": (404, "an unknown activation"),
    "trigger_not_found": (404, "an unknown trigger"),
    "dead_letter_not_found": (404, "an unknown dead letter"),
    "bucket_not_found": (404, "an unknown bucket (polyfn's own storage routes; S3 answers NoSuchBucket)"),
    "key_not_found": (404, "an unknown key"),
    "secret_not_found": (404, "an unknown secret"),
    "site_not_found": (404, "an unknown site"),
    "workflow_not_found": (404, "an unknown workflow"),
    "execution_not_found": (404, "an unknown workflow execution"),
    "app_not_found": (404, "an unknown app"),
    "namespace_not_found": (404, "an unknown namespace, or one the key may not see (the same answer)"),
    "method_not_allowed": (405, "a method the path does not take"),
    "upgrade_required": (426, "a plain HTTP request to a WebSocket API (ws://NODE/ws/FUNCTION)"),
    "storage_disabled": (409, "the object store is off on this node"),
    "namespace_exists": (409, "a namespace of that name exists"),
    "namespace_busy": (409, "deleting a namespace whose invocations or workflow executions run (force=true stops them)"),
    "not_cancellable": (409, "an activation that is neither running nor waiting to start (polyfn cancel)"),
    "function_cancelled": (499, "the invocation was cancelled while it ran (DELETE /v1/activations/ID)"),
    # too much
    "payload_too_large": (413, "a payload over max_payload"),
    "code_too_large": (413, "a code archive over the code size limit"),
    "unsupported_media_type": (415, "a body type the route does not read"),
    "too_many_requests": (429, "over a key's rate or the function's queue (Retry-After)"),
    "rate_limited": (429, "over the function's rate_limit (Retry-After)"),
    "quota_exceeded": (429, "over a namespace's quota: its name, limit and use in the error (Retry-After)"),
    # the platform's own failures
    "not_implemented": (501, "an operation this node does not implement"),
    "secrets_unavailable": (501, "secrets need the node key"),
    "function_crashed": (502, "the instance died"),
    "function_oom": (502, "the instance ran out of memory"),
    "function_init_failed": (502, "the function failed to start"),
    "response_too_large": (502, "the function answered more than max_payload"),
    "shutting_down": (503, "the node is draining"),
    "node_memory_exhausted": (503, "the memory budget has no room for another instance (Retry-After)"),
    "queue_unavailable": (503, "the cluster's job stream did not take an async call"),
    "artifact_store_unavailable": (503, "the code could not be stored for the other nodes"),
    "code_unavailable": (503, "a pinned version's code cannot be made local (Retry-After)"),
    "storage_unavailable": (503, "the object store is not running"),
    "apps_unavailable": (503, "the app service is not running"),
    "unavailable": (503, "the workflow service is not running"),
    "function_timeout": (504, "the invocation overran the function's timeout"),
    # a streamed response stopped by the node (docs/streaming.md): an SSE `event: error` mid-stream, or the status
    # of a caller that reads the stream whole
    "stream_idle_timeout": (504, "a streaming function wrote nothing for its stream_idle_timeout"),
    "stream_too_long": (504, "a streamed response ran past its stream_max_duration"),
}
