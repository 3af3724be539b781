"""`UsageMeter.add` (observe/usage.py): a stored batch's sums, per namespace, function and hour, the same as
summing each record's `billed_ms` and bytes one by one, however the records interleave (its runs of one function
and hour are summed in locals)."""

from __future__ import annotations

import random

from polyfn.model import Activation
from polyfn.observe.usage import SUMS, UsageMeter, billed_ms
from polyfn.tenancy import split


def _record(rng: random.Random, i: int) -> Activation:
    a = Activation(id=f"{i:032x}", function=rng.choice(["f", "g", "team--h"]), revision=1, trigger="http",
                   start=7200.0 * 100 + rng.choice([0.0, 3599.999, 3600.0, 7300.5]) + i * 1e-3,
                   memory_mb=rng.choice([0, 128, 256]), req_bytes=rng.randrange(100), resp_bytes=rng.randrange(100))
    a.instance = rng.choice(["", "i1"])
    a.duration_ms = rng.choice([0.0, 0.3, 1.0, 1.0001, 2.5, 40.0])
    a.wait_ms = rng.choice([0.0, 0.2, 5.0])
    a.status = rng.choice(["success", "success", "error", "timeout"])
    return a


def _expected(acts: list[Activation]) -> dict[tuple[str, str, int], list[int]]:
    out: dict[tuple[str, str, int], list[int]] = {}
    for a in acts:
        if not a.memory_mb:
            continue
        ns, name = split(a.function)
        sums = out.setdefault((ns, name, int(a.start // 3600) * 3600), [0] * len(SUMS))
        ms = billed_ms(a)
        sums[0] += 1
        sums[1] += a.status != "success"
        sums[2] += ms
        sums[3] += ms * a.memory_mb
        sums[4] += a.req_bytes
        sums[5] += a.resp_bytes
    return out


def test_add_sums_each_function_and_hour_as_record_by_record() -> None:
    rng = random.Random(7)
    meter = UsageMeter(None)
    acts = [_record(rng, i) for i in range(2000)]
    acts.sort(key=lambda a: (rng.random() < 0.7, a.function))  # runs of one function, and interleavings
    meter.add(acts[:900])
    meter.add(acts[900:])
    assert meter.pending == _expected(acts)


def test_add_of_one_long_run_and_nothing() -> None:
    meter = UsageMeter(None)
    meter.add([])
    assert meter.pending == {}
    acts = []
    for i in range(300):
        a = Activation(id=str(i), function="f", revision=1, trigger="http", start=3600.0 * 5 + i, memory_mb=128,
                       req_bytes=3, resp_bytes=12)
        a.instance, a.duration_ms, a.wait_ms = "i1", 0.9, 0.0
        acts.append(a)
    meter.add(acts)
    assert meter.pending == {("default", "f", 18000): [300, 0, 300, 300 * 128, 900, 3600, 0, 0, 0, 0]}
