"""What the compat APIs share: reading a revision's code back, deleting, background invocations."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfn.invoker import Outcome

if TYPE_CHECKING:
    from polyfn.server import Node

log = logging.getLogger("polyfn.compat")


def read_code(code_dir: str) -> dict[str, bytes]:
    """The files of a revision (to deploy a new revision with the same code and another config)."""
    root = Path(code_dir)
    files: dict[str, bytes] = {}
    for directory, _dirs, names in os.walk(root):
        for n in names:
            p = Path(directory) / n
            files[p.relative_to(root).as_posix()] = p.read_bytes()
    return files


def zip_code(code_dir: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(read_code(code_dir).items()):
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


async def current_files(node: Node, name: str) -> dict[str, bytes] | None:
    rev = await node.store.get_current_revision(name)
    if rev is None:
        return None
    return await asyncio.to_thread(read_code, rev.code_dir)


async def delete_function(node: Node, name: str) -> bool:
    """Delete a function, for every API (`DELETE /v1/functions/{name}` and the vendors'): forget it, drain its
    pool, remove its code later, and drop what points at it: storage notifications, triggers, and its jobs
    in the cluster's queue stream (dead-lettered). False when it does not exist."""
    deleted = await node.store.delete_function(name)
    if deleted is None:
        return False
    pool = node.registry.remove(name)
    node.schedule_code_cleanup(name, deleted, pool)
    if node.storage is not None:
        await node.storage.forget_function(name)
    if node.triggers is not None:  # a deleted function's triggers go with it
        await node.triggers.delete_for(name)
    if node.queue is not None:
        await node.queue.function_deleted(name)
    return True


def outcome_headers(out: Outcome) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in out.headers}


class Background:
    """Invocations accepted with 202 and run after the response (Lambda `Event`, OpenFaaS async,
    OpenWhisk non-blocking). Held here so they are not garbage-collected and can be awaited at shutdown.

    Not durable: a node that stops before they run loses them. The durable async queue (the events
    issue) replaces `submit` when it lands."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def submit(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self._done)
        return t

    def _done(self, t: asyncio.Task[Any]) -> None:
        self.tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.warning("background invocation failed: %s", t.exception())


class AsyncRejected(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def submit_async(node: Node, function: str, kind: str, trigger: str, body: bytes, content_type: str,
                       headers: list[tuple[str, str]] | None = None, method: str = "POST", path: str = "/",
                       query: str = "", callback_url: str | None = None, job_id: str | None = None) -> bool:
    """Queue one invocation on the node's durable async queue (the events issue's `node.queue`) when it has
    one; returns False when it has not, and the caller runs it with `background(node).submit` instead.
    A refusal by the queue (unknown function, payload too large, bad callback URL) raises AsyncRejected."""
    queue = getattr(node, "queue", None)
    if queue is None:
        return False
    try:
        await queue.submit(function, kind, trigger, body, content_type, headers=headers, method=method, path=path,
                           query=query, callback_url=callback_url, job_id=job_id)
    except Exception as e:
        if all(hasattr(e, a) for a in ("status", "code", "message")):
            raise AsyncRejected(e.status, e.code, e.message) from None  # type: ignore[attr-defined]
        raise
    return True


def background(node: Node) -> Background:
    bg = getattr(node, "_compat_background", None)
    if bg is None:
        bg = Background()
        node._compat_background = bg  # type: ignore[attr-defined]
    return bg
