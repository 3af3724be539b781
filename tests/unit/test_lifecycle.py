"""The node's one start/stop list: what started stops in reverse, also when a start fails halfway."""

from __future__ import annotations

import pytest

from polyfn.lifecycle import Lifecycle


def _life(log: list[str], failing_start: str = "", failing_stop: str = "") -> Lifecycle:
    life = Lifecycle()

    def part(name: str, sync: bool) -> None:
        def start() -> None:
            if name == failing_start:
                raise RuntimeError(f"{name} cannot start")
            log.append(f"start {name}")

        async def astart() -> None:
            start()

        def stop() -> None:
            log.append(f"stop {name}")
            if name == failing_stop:
                raise RuntimeError(f"{name} cannot stop")

        async def astop() -> None:
            stop()

        life.add(name, start if sync else astart, stop if sync else astop)

    part("store", False)
    part("keys", True)
    life.add("directories", None, None)
    part("queue", False)
    part("triggers", True)
    return life


async def test_stop_reverses_start() -> None:
    log: list[str] = []
    life = _life(log)
    await life.start()
    await life.stop()
    assert log == ["start store", "start keys", "start queue", "start triggers",
                   "stop triggers", "stop queue", "stop keys", "stop store"]


async def test_failed_start_stops_what_started_and_only_that() -> None:
    log: list[str] = []
    life = _life(log, failing_start="queue")
    with pytest.raises(RuntimeError, match="queue cannot start"):
        await life.start()
    assert log == ["start store", "start keys", "stop keys", "stop store"]
    await life.stop()  # the node's stop after a failed start: nothing is stopped twice
    assert log == ["start store", "start keys", "stop keys", "stop store"]


async def test_a_failing_stop_does_not_keep_the_earlier_ones_running() -> None:
    log: list[str] = []
    life = _life(log, failing_stop="queue")
    await life.start()
    await life.stop()
    assert log[4:] == ["stop triggers", "stop queue", "stop keys", "stop store"]


async def test_stop_before_start_does_nothing() -> None:
    log: list[str] = []
    await _life(log).stop()
    assert log == []
