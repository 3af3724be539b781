"""The `X-Polyfn-*` header names are the node's own: callers never set them for a function.

The node passes facts to functions and to its own later steps in such headers (`X-Polyfn-Revision` pins a
queued job to a revision, `X-Polyfn-Idempotency-Key` and `X-Polyfn-Attempt` carry the job's id and attempt,
`X-Polyfn-Event-Hops` bounds CloudEvent reply chains, `X-Polyfn-Trigger` names the trigger). A caller who
could set them could run an old revision, forge the idempotency key a function relies on, or queue a job
that can never run. So every ingress drops them from requests that come from outside (`from_outside`), after
reading the few a caller may send to the node itself (`X-Polyfn-Async`), and the node adds its own after.
"""

from __future__ import annotations

INTERNAL_PREFIX = "x-polyfn-"


def is_internal(name: str) -> bool:
    return name[:9].lower() == INTERNAL_PREFIX


def from_outside(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`pairs` without the node's internal headers (the list itself when it has none)."""
    if not any(is_internal(k) for k, _ in pairs):
        return pairs
    return [(k, v) for k, v in pairs if not is_internal(k)]
