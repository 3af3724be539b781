"""The async queue as one namespace sees it (`/v1/queue`, `/v1/dlq`, docs/tenancy.md): its dead letters and its
jobs' counts. The node's admin key (naming no namespace) sees the whole node's queue, as before namespaces;
every other request its namespace's only. A job belongs to the namespace of its function's held name (tenancy.py): `team-a~hello` is team-a's,
a plain name the default namespace's. Read from the queue file (`QueueDB`), which also holds every dead letter.
"""

from __future__ import annotations

from typing import Any

from polyfn.queue.builtin import Job, _job
from polyfn.tenancy import DEFAULT, SEP, owns


def _of(namespace: str) -> tuple[str, list[Any]]:
    """The SQL condition (and its parameters) of a namespace's jobs."""
    if namespace == DEFAULT:
        return "instr(function, ?) = 0", [SEP]
    return "substr(function, 1, ?) = ?", [len(namespace) + 1, namespace + SEP]


async def dead(db: Any, namespace: str, function: str | None = None, limit: int = 100) -> list[Job]:
    """The namespace's dead letters, newest first (`function`: a held name of its own)."""
    cond, params = _of(namespace)
    sql = f"SELECT * FROM jobs WHERE state='dead' AND {cond}"
    if function:
        sql += " AND function=?"
        params.append(function)
    sql += " ORDER BY dead_at DESC LIMIT ?"
    params.append(limit)
    return [_job(r) for r in await db.read(sql, params)]


async def depth(queue: Any, namespace: str) -> dict[str, Any]:
    """The namespace's share of the queue (every feed: the file and a cluster's stream): jobs queued or running,
    and dead letters."""
    queued, buried = await queue.backlog()
    return {"namespace": namespace, "queued": sum(n for f, n in queued.items() if owns(namespace, f)),
            "dead_letters": sum(n for f, n in buried.items() if owns(namespace, f))}


async def dead_letter(db: Any, namespace: str, job_id: str) -> Job | None:
    """A dead letter of the namespace (another's is None, as an unknown one)."""
    job: Job | None = await db.get(job_id)
    if job is None or job.state != "dead" or not owns(namespace, job.function):
        return None
    return job
