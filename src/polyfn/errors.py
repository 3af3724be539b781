"""The platform's own errors: one typed exception, raised anywhere below the faces and serialised once, at the edge.

A layer that refuses a request (authorisation, the async queue, the admission of a call) raises `PolyfnError`
with the HTTP status and the stable `code` a client can branch on; the face that received the request turns it
into its wire shape (`api/errors.py`: `{"error": {"code", "message"}}` with `X-Polyfn-Error`). Nothing below the
faces imports a web framework or writes JSON for an error.
"""

from __future__ import annotations


class PolyfnError(Exception):
    """A refusal with an HTTP status, a stable code (`function_not_found`, `payload_too_large`, …) and a message
    that says what to do next; `headers` go on the response (`Retry-After`, `WWW-Authenticate`)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
