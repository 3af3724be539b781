"""Workflow engine fixtures: the store's database (a SQLite file, and PostgreSQL: every engine test runs on
both, tests/store/conftest.py) and functions as Python callables behind the engine's `InvokeFn`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.store.conftest import db_url, pg_database  # noqa: F401  (fixtures)

from polyfn.store import Store
from polyfn.workflows.service import WorkflowService
from polyfn.workflows.tasks import TaskOutcome


class Functions:
    """name → callable(payload) (sync or async); raise `Failure` to fail the task with an error name. Counts
    calls per activation id (an activation id seen twice is a task that ran again)."""

    def __init__(self) -> None:
        self.fns: dict[str, Callable[[Any], Any]] = {}
        self.calls: list[tuple[str, Any, str]] = []

    def __setitem__(self, name: str, fn: Callable[[Any], Any]) -> None:
        self.fns[name] = fn

    async def invoke(self, function: str, payload: bytes, activation_id: str) -> TaskOutcome:
        value = json.loads(payload)
        self.calls.append((function, value, activation_id))
        fn = self.fns.get(function)
        if fn is None:
            return TaskOutcome(False, error="Lambda.ResourceNotFoundException", cause=f"Function not found: {function!r}")
        try:
            out = fn(value)
            if asyncio.iscoroutine(out):
                out = await out
        except Failure as e:
            return TaskOutcome(False, error=e.error, cause=e.cause)
        return TaskOutcome(True, output=out)


class Failure(Exception):
    def __init__(self, error: str, cause: str = ""):
        super().__init__(cause)
        self.error, self.cause = error, cause


@pytest.fixture
def functions() -> Functions:
    return Functions()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:  # noqa: F811
    s = await Store.open(db_url)
    yield s
    await s.close()


@pytest.fixture
async def make_service(store: Store, functions: Functions) -> AsyncIterator[Callable[..., Any]]:
    """Build (and start) services on the test's database; each is stopped at the end."""
    made: list[WorkflowService] = []

    async def make(**kw: Any) -> WorkflowService:
        poll = kw.pop("poll", 0.05)
        svc = WorkflowService(store.engine, kw.pop("invoke", functions.invoke), owner=kw.pop("owner", "node-a"), **kw)
        svc.engine.work.poll = poll
        await svc.start()
        made.append(svc)
        return svc

    yield make
    for svc in made:
        await svc.stop(1)


@pytest.fixture
async def service(make_service: Callable[..., Any]) -> WorkflowService:
    return await make_service()
