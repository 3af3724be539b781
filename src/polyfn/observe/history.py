"""The charts' last hour at a node's start: replayed into the metrics' per-function history from the stored
activations (in the background: a long history must not hold up /healthz)."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("polyfn.node")


async def replay_last_hour(store: Any, metrics: Any, started: float) -> None:
    try:
        acts = await store.list_activations(since=started - 3600, until=started, limit=50_000)
        n = metrics.replay(acts, started, time.time())
        if n:
            log.info("charts: %d activations of the last hour replayed from the store", n)
    except Exception as e:  # charts only: never a reason to fail
        log.warning("charts: the last hour's activations could not be replayed: %s", e)
