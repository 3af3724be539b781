"""Vendor shapes of async-job callbacks: what a caller that expects a vendor's callback receives at its
`X-Callback-Url` instead of polyfn's JSON result.

The table is static (filled at import, not when a vendor's API is installed) because the queue delivers
callbacks of jobs recovered after a restart as soon as it starts — before the node has built its HTTP API,
which happens in the background once `/healthz` answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from polyfn import tenancy

#: the trigger name of OpenFaaS async calls (their queue jobs and activations)
OPENFAAS_ASYNC = "openfaas-async"


def openfaas_callback(job: Any, out: Any, status: str, reason: str | None) -> tuple[bytes, dict[str, str]]:
    """What OpenFaaS's queue-worker POSTs to X-Callback-Url: the function's response body and headers, plus
    X-Call-Id, X-Function-Status, X-Function-Name, X-Duration-Seconds (since the call was accepted) and
    X-Start-Time (ns); a namespaced function is named by its local name, as OpenFaaS's `name` of
    `name.namespace` (tenancy.py). A call that ends in the dead-letter queue without a response reports status 500."""
    call_id = next((v for k, v in job.headers if k.lower() == "x-call-id"), job.id)
    hdrs: dict[str, str] = {}
    if out is not None:
        hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in out.headers
                if k.lower() not in (b"content-length", b"transfer-encoding", b"connection")}
    hdrs.update({"X-Call-Id": call_id, "X-Function-Status": str(out.status if out is not None else 500),
                 "X-Function-Name": tenancy.local(job.function), "X-Duration-Seconds": f"{time.time() - job.enqueued_at:.6f}",
                 "X-Start-Time": str(int(job.enqueued_at * 1e9))})
    if reason:
        hdrs["X-Polyfn-Dead-Letter"] = reason[:200].replace("\r", " ").replace("\n", " ")
    return (out.body if out is not None else b""), hdrs


#: trigger name → callback shape (job, outcome or None, status, reason) → (body, headers)
SHAPES: dict[str, Callable[[Any, Any, str, str | None], tuple[bytes, dict[str, str]]]] = {
    OPENFAAS_ASYNC: openfaas_callback,
}
