"""The async queue's ledger (queue/capacity.py): what a node may hold and run, per function and in all."""

from __future__ import annotations

import pytest

from polyfn.queue.capacity import PREFETCH, Ledger


def _ledger(max_held: int = 1000, **caps: int) -> Ledger[str]:
    return Ledger(max_held, lambda f: caps.get(f, 1))


@pytest.mark.parametrize(("max_held", "cap", "limit"), [
    (1000, 1, 1 + PREFETCH),  # capacity plus a prefetch: claims come in batches
    (1000, 100, 200),  # a big function: twice its capacity
    (50, 100, 50),  # never more than the node holds in all
])
def test_limit(max_held: int, cap: int, limit: int) -> None:
    assert _ledger(max_held, f=cap).limit("f") == (cap, limit)


def test_room_is_the_functions_or_the_nodes_whichever_is_less() -> None:
    led = _ledger(10, f=2, g=2)
    assert led.room("f") == 10
    for _ in range(8):
        led.hold("g")
    assert led.room("f") == 2 and led.free() == 2
    led.release("g")
    assert led.room("f") == 3
    led.release("g", completing=True)  # in the completion batch: the function's slot is free, not the node's
    assert led.held["g"] == 6 and led.free() == 3
    led.completed(1)
    assert led.free() == 4


def test_refill_waits_for_half_the_prefetch() -> None:
    assert _ledger(f=4).refill("f") == (4 + PREFETCH - 4) // 2
    assert _ledger(f=100).refill("f") == 50


@pytest.mark.parametrize(("max_held", "cap", "held", "others"), [
    (1000, 4, 0, 0), (1000, 4, 30, 0), (1000, 4, 36, 0), (1000, 4, 37, 0), (1000, 4, 68, 0),
    (50, 4, 20, 20), (50, 4, 20, 30), (50, 4, 20, 29), (40, 100, 10, 0), (40, 100, 39, 0),
])
def test_refill_due_is_room_for_a_refill_or_what_the_node_has_left(max_held: int, cap: int, held: int,
                                                                    others: int) -> None:
    led = _ledger(max_held, f=cap)
    for _ in range(held):
        led.hold("f")
    for _ in range(others):
        led.hold("g")
    want = led.free() > 0 and led.room("f") >= max(1, min(led.refill("f"), led.free()))
    assert led.refill_due("f") is want


def test_jobs_beyond_capacity_wait_in_order_and_take_freed_slots() -> None:
    led = _ledger(f=2)
    assert [led.start("f", j) for j in ("a", "b", "c", "d")] == [True, True, False, False]
    assert led.invoking == {"f": 2} and list(led.waiting["f"]) == ["c", "d"]
    assert led.invoked("f") == ["c"]
    assert led.invoked("f", stopping=True) == []  # a stopping node starts nothing more
    assert led.drop_waiting() == ["d"] and led.waiting == {}
    assert led.invoked("f") == [] and led.invoking == {}


def test_a_grown_capacity_starts_several_waiting_jobs_at_once() -> None:
    caps = {"f": 1}
    led: Ledger[str] = Ledger(100, lambda f: caps[f])
    assert [led.start("f", j) for j in ("a", "b", "c", "d")] == [True, False, False, False]
    caps["f"] = 3
    assert led.invoked("f") == ["b", "c", "d"] and led.invoking == {"f": 3} and "f" not in led.waiting


def test_a_waiting_job_is_withdrawn_from_its_line() -> None:
    """A cancel takes a held job out of its line: it never starts; the others keep their order."""
    led = _ledger(f=1, g=1)
    assert [led.start("f", j) for j in ("a", "b", "c")] == [True, False, False]
    assert led.start("g", "x") and not led.start("g", "y")
    assert led.withdraw(lambda j: j == "a") is None  # invoking, not waiting
    assert led.withdraw(lambda j: j == "b") == "b" and list(led.waiting["f"]) == ["c"]
    assert led.withdraw(lambda j: j == "y") == "y" and "g" not in led.waiting
    assert led.withdraw(lambda j: j == "nope") is None
    assert led.invoked("f") == ["c"] and led.invoked("g") == []



def test_payload_bytes_held_are_bounded() -> None:
    """The node takes jobs while the payloads it holds are under `max_bytes`: at most that plus one job's (so a
    payload over the whole budget still runs). Finished jobs keep their bytes until their batch is completed."""
    led: Ledger[str] = Ledger(100, lambda f: 1, max_bytes=1000)
    assert led.takes("f") and led.spare() == 1000
    led.hold("f", 600)
    assert led.spare() == 400 and led.takes("f") and led.takes("g")
    led.hold("g", 5000)  # the job that passes the budget
    assert led.spare() == -4600 and not led.takes("f") and not led.takes("h")
    led.release("g", 5000, completing=True)  # in the completion batch: its payload is still in memory
    assert led.spare() == -4600 and not led.takes("g")
    led.completed(1, 5000)
    assert led.spare() == 400 and led.takes("f")
    led.release("f", 600)
    assert led.nbytes == 0 and led.nheld == 0


def test_a_refill_waits_for_half_the_bytes_too() -> None:
    led: Ledger[str] = Ledger(1000, lambda f: 1, max_bytes=1000)
    led.hold("f", 600)  # room for 64 more by count, but over half the bytes held
    assert not led.refill_due("f") and not led.refill_due("g")
    led.release("f", 600)
    led.hold("f", 500)
    assert led.refill_due("f")
