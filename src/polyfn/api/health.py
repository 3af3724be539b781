"""`GET /healthz`: what a load balancer or a probe asks. Served by the node's top-level ASGI app (node.py)
without the control API, which is built after the node answers; documented in the API's OpenAPI."""

from __future__ import annotations

from typing import Any

from polyfn import __version__


def health(registry: Any, sync: Any, queue: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "ok", "version": __version__, "functions": len(registry.functions)}
    if sync is not None:  # a cluster node: revisions other nodes deployed that it cannot serve (see logs)
        out["cluster"] = {"sync_interval": sync.interval, "not_served": sorted(sync.failing)}
    jobs = queue.jobs
    if jobs is not None:  # the cluster's queue: while NATS is away, async calls get 503 (sync ones still run)
        out["queue"] = {"backend": "nats-jetstream", "stream": jobs.stream, "connected": jobs.connected}
        if not jobs.connected:
            out["status"] = "degraded"
    return out
