"""What a namespace owns in the workflow store, for deleting a namespace (namespaces.TenancyOps).

A namespace's state machines and their executions are stored under its name (`wf_machines.namespace`,
`wf_executions.namespace`); its durable functions' executions under `lambda` (service.DURABLE_NAMESPACE) with the
function's held name (`team-a~hello`) as their machine. `busy` counts the running ones (deleting a namespace
refuses while any run, unless forced); `forget_namespace` stops those still running and deletes every row.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.engine import Connection

from polyfn.tenancy import DEFAULT, SEP
from polyfn.workflows.store import definitions, events, executions, machines, ops, work

log = logging.getLogger("polyfn.workflows")
DURABLE = "lambda"  # (service.DURABLE_NAMESPACE)


def _of(namespace: str, table: Any, machine_column: Any) -> Any:
    """Rows of `namespace`: its own, and its durable functions' (held names `namespace~…` under `lambda`)."""
    return or_(table.c.namespace == namespace,
               and_(table.c.namespace == DURABLE, machine_column.startswith(namespace + SEP, autoescape=True)))


def _running(conn: Connection, namespace: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(select(executions.c.id, executions.c.kind).where(
        _of(namespace, executions, executions.c.machine), executions.c.status == "RUNNING"))]


def _count_running(conn: Connection, namespace: str) -> int:
    return int(conn.execute(select(func.count()).select_from(executions).where(
        _of(namespace, executions, executions.c.machine), executions.c.status == "RUNNING")).scalar() or 0)


def _forget(conn: Connection, namespace: str) -> dict[str, int]:
    ids = [r[0] for r in conn.execute(select(executions.c.id).where(_of(namespace, executions, executions.c.machine)))]
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for table, column in ((events, events.c.execution), (ops, ops.c.execution), (work, work.c.execution),
                              (executions, executions.c.id)):
            conn.execute(delete(table).where(column.in_(chunk)))
    conn.execute(delete(work).where(work.c.id.startswith(f"schedule/{namespace}/", autoescape=True)))
    conn.execute(delete(definitions).where(_of(namespace, definitions, definitions.c.machine)))
    n = conn.execute(delete(machines).where(machines.c.namespace == namespace)).rowcount
    conn.execute(delete(machines).where(machines.c.namespace == DURABLE,
                                        machines.c.name.startswith(namespace + SEP, autoescape=True)))
    return {"workflows": int(n or 0), "executions": len(ids)}


class WorkflowsOwned:
    """`TenancyOps.owned` member for the workflow service: a namespace's machines and executions."""

    def __init__(self, service: Any):
        self.service = service  # WorkflowService

    async def busy(self, namespace: str) -> int:
        """Executions of the namespace still running (state machines' and durable functions')."""
        if namespace == DEFAULT:
            return 0
        return await self.service.store.db.read(_count_running, namespace)

    async def forget_namespace(self, namespace: str) -> dict[str, Any]:
        if namespace == DEFAULT:
            return {}
        svc = self.service
        cause = f"namespace {namespace!r} was deleted"
        for ex_id, kind in await svc.store.db.read(_running, namespace):  # stopped first: the engine lets them go
            event = {"type": "stop", "error": {"ErrorType": "Namespace.Deleted", "ErrorMessage": cause}} \
                if kind == "durable" else {"type": "stop", "error": "Namespace.Deleted", "cause": cause}
            try:
                await svc.engine.apply(ex_id, event)
            except Exception:  # (deleted below in any case)
                log.exception("workflows: stopping execution %s of deleted namespace %s failed", ex_id, namespace)
        svc._machines = {k: v for k, v in svc._machines.items() if k[0] != namespace}
        gone = await svc.store.db.write_apart(_forget, namespace)
        return {"workflows_deleted": gone["workflows"], "executions_deleted": gone["executions"]}
