"""A function's CPU weight (its memory) is split over its cgroups however many it has (instances/cpushare.py)."""

from __future__ import annotations

from polyfn.instances.cpushare import CpuShares, function_shares


def test_a_functions_weight_is_split_over_its_cgroups_and_rebalanced() -> None:
    written: dict[int, int] = {}
    cpu = CpuShares(lambda pid, shares: written.__setitem__(pid, shares))
    cpu.join("loud", 256, 10)
    assert written == {10: 256}
    for pid in (11, 12, 13):  # four instances: a quarter each, the function's total unchanged
        cpu.join("loud", 256, pid)
    assert {written[p] for p in (10, 11, 12, 13)} == {64}
    cpu.join("quiet", 256, 20)  # a neighbour of the same memory weighs as much as all of them together
    assert written[20] == 256 == sum(written[p] for p in (10, 11, 12, 13))
    cpu.leave(10)
    cpu.leave(11)
    assert written[12] == written[13] == 128 and cpu.shares_of(10) == 0
    cpu.join("loud", 256, 12)  # joined again (its sandbox wrote its own weight since): written again
    assert written[12] == 128
    cpu.leave(999)  # unknown: nothing
    cpu.join("big", 1769, 30)  # in proportion to memory
    assert written[30] == function_shares(1769) == 1769


def test_a_pid_that_changes_function_leaves_the_old_one() -> None:
    written: dict[int, int] = {}
    cpu = CpuShares(lambda pid, shares: written.__setitem__(pid, shares))
    cpu.join("a", 256, 1)
    cpu.join("a", 256, 2)
    cpu.join("b", 512, 2)
    assert written[1] == 256 and written[2] == 512


def test_a_weight_that_did_not_change_is_not_written_again() -> None:
    """A burst of 200 clean starts of one function: past a few members the share is the floor, so each join
    writes the newcomer's weight only (not 200 × 200 writes); a member that joins again is rewritten."""
    writes: list[int] = []
    cpu = CpuShares(lambda pid, shares: writes.append(pid))
    for pid in range(1, 201):
        cpu.join("f", 64, pid)
    assert len(writes) < 3 * 200
    assert cpu.shares_of(1) == cpu.shares_of(200) == 2
    writes.clear()
    cpu.join("f", 64, 7)  # (its sandbox may have written its own weight since)
    assert writes == [7]
