"""`db/settled.py`: a write's outcome resumes its waiting task as it is settled, with a future's semantics."""

from __future__ import annotations

import asyncio

import pytest

from polyfn.db.settled import Settled


def test_a_waiting_task_resumes_inside_set_result() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut = Settled(loop)
        seen: list[str] = []

        async def waiter() -> None:
            seen.append(f"got {await fut}")

        task = loop.create_task(waiter())
        await asyncio.sleep(0)  # (the task waits on the future now)
        assert asyncio.isfuture(fut) and not fut.done()

        def commit() -> None:  # (as the storage settles a write: in a callback of the loop)
            fut.set_result(7)
            seen.append("after set_result")

        loop.call_soon(commit)
        await task
        assert seen == ["got 7", "after set_result"]  # resumed within set_result, not a turn of the loop later

        inside = Settled(loop)  # settled inside a task's step: the waiter resumes in the loop's next turn
        task = loop.create_task(_wait(inside))
        await asyncio.sleep(0)
        inside.set_result(8)
        assert not task.done() and await task == 8

    asyncio.run(main())


def test_exceptions_cancellation_and_late_callbacks() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        failed = Settled(loop)
        task = loop.create_task(_wait(failed))
        await asyncio.sleep(0)
        failed.set_exception(ValueError("refused"))
        with pytest.raises(ValueError, match="refused"):
            await task
        with pytest.raises(asyncio.InvalidStateError):
            failed.set_result(1)

        waited = Settled(loop)
        task = loop.create_task(_wait(waited))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waited.cancelled()

        done = Settled(loop)
        done.set_result("x")
        late: list[object] = []
        done.add_done_callback(lambda f: late.append(f.result()))
        assert late == []  # (already settled: the callback runs in the loop's next turn, as a future's)
        await asyncio.sleep(0)
        assert late == ["x"] and await done == "x"

        broken = Settled(loop)
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        after: list[int] = []
        broken.add_done_callback(lambda f: 1 / 0)
        broken.add_done_callback(lambda f: after.append(f.result()))
        loop.call_soon(broken.set_result, 3)
        await asyncio.sleep(0)
        assert after == [3] and isinstance(errors[0]["exception"], ZeroDivisionError)

    asyncio.run(main())


async def _wait(fut: Settled) -> object:
    return await fut
