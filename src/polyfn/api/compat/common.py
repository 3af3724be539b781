"""What the compat APIs share: reading a revision's code back, queueing an async invocation."""

from __future__ import annotations

import asyncio
import io
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from polyfn.call import Call
from polyfn.invoker import Outcome

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import (
        Activations,
        AsyncJobs,
        DeleteFunction,
        Deploys,
        FunctionStore,
        Invocations,
        Keys,
    )


class VendorFace:
    """The services every vendor face uses, handed in by the composition root (never the node)."""

    def __init__(self, *, settings: Settings, store: FunctionStore, deployer: Deploys, invoker: Invocations,
                 recorder: Activations, queue: AsyncJobs, keys: Keys, delete_function: DeleteFunction):
        self.settings = settings
        self.store = store
        self.deployer = deployer
        self.invoker = invoker
        self.recorder = recorder
        self.queue = queue
        self.keys = keys
        self.remove_function = delete_function


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


async def current_files(store: FunctionStore, name: str) -> dict[str, bytes] | None:
    rev = await store.get_current_revision(name)
    if rev is None:
        return None
    return await asyncio.to_thread(read_code, rev.code_dir)


def outcome_headers(out: Outcome) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in out.headers}


class AsyncRejected(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def submit_async(queue: AsyncJobs, function: str, kind: str, trigger: str, body: bytes, content_type: str,
                       headers: list[tuple[str, str]] | None = None, method: str = "POST", path: str = "/",
                       query: str = "", callback_url: str | None = None, job_id: str | None = None) -> None:
    """Queue one invocation on the node's durable async queue (Lambda `Event`, OpenFaaS async, OpenWhisk
    non-blocking). A refusal by the queue (unknown function, payload too large, bad callback URL) raises
    AsyncRejected."""
    try:
        await queue.enqueue(Call(function, kind, trigger, method, path, query, headers, body, content_type),
                            callback_url, job_id)
    except Exception as e:
        if all(hasattr(e, a) for a in ("status", "code", "message")):
            raise AsyncRejected(e.status, e.code, e.message) from None  # type: ignore[attr-defined]
        raise
