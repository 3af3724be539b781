"""Usage metering in the store (SQLite and PostgreSQL): the recorder's flush sums each stored batch per function and
hour (observe/usage.py), the sums add up across flushes, equal the sum over the stored activation records exactly,
and are pruned by age. Price tables and the grouping are checked on real sums."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from polyfn.model import Activation
from polyfn.observe.metrics import Metrics
from polyfn.observe.recorder import ActivationRecorder
from polyfn.observe.usage import NAMESPACE, UsageMeter, billed_ms, load_prices, price_tables, summarise
from polyfn.store import Store

H = 1_800_000_000  # an hour's start (epoch seconds divisible by 3600)


def act(i: int, function: str, start: float, duration: float, wait: float = 0.0, memory: int = 128,
        instance: str = "i1", status: str = "success", req: int = 10, resp: int = 20) -> Activation:
    return Activation(id=f"a{i}", function=function, revision=1, trigger="http", start=start, end=start + duration,
                      duration_ms=duration, wait_ms=wait, memory_mb=memory, instance=instance, status=status,
                      req_bytes=req, resp_bytes=resp)


def test_billed_ms_rounds_up_to_the_millisecond() -> None:
    assert billed_ms(act(0, "f", 0, 10.0, wait=2.5)) == 8  # 7.5 ms on the instance
    assert billed_ms(act(0, "f", 0, 3.0, wait=1.0)) == 2  # exactly 2
    assert billed_ms(act(0, "f", 0, 0.2)) == 1  # at least 1 ms
    assert billed_ms(act(0, "f", 0, 50.0, instance="")) == 0  # no instance (it failed to start): nothing billed


async def test_flushes_sum_per_function_and_hour_exactly(store: Store) -> None:
    metrics = Metrics()
    rec = ActivationRecorder(store)
    rec.meter = UsageMeter(store, metrics)
    acts = [act(i, "f" if i % 3 else "g", H + (i % 2) * 3600 + i, 1.3 + i * 0.77, wait=0.1 * i,
                memory=128 if i % 3 else 512, status="error" if i == 4 else "success") for i in range(40)]
    acts.append(Activation(id="pending", function="f", revision=1, trigger="async", start=H, status="pending"))
    for a in acts[:25]:
        rec.record(a)
    await rec.flush()
    for a in acts[25:]:
        rec.record(a)
    await rec.flush()  # a second flush adds to the stored sums (upsert)
    rows = await store.list_usage(since=H)
    assert {(r["namespace"], r["function"], r["hour"]) for r in rows} == {
        (NAMESPACE, f, h) for f in "fg" for h in (H, H + 3600)}
    stored = await store.list_activations(limit=1000)
    metered = [a for a in stored if a.memory_mb]  # the pending record bills nothing
    assert len(metered) == 40
    assert sum(r["invocations"] for r in rows) == 40
    assert sum(r["errors"] for r in rows) == 1
    assert sum(r["mb_ms"] for r in rows) == sum(billed_ms(a) * a.memory_mb for a in metered)
    assert sum(r["billed_ms"] for r in rows) == sum(billed_ms(a) for a in metered)
    assert sum(r["req_bytes"] for r in rows) == 400 and sum(r["resp_bytes"] for r in rows) == 800
    f_mb_ms = sum(billed_ms(a) * a.memory_mb for a in metered if a.function == "f")
    assert metrics.billed_gb_seconds.values[("f",)] == pytest.approx(f_mb_ms / 1024 / 1000)

    by_day = summarise(rows, "day", H, None)
    assert len(by_day["usage"]) == 1 and by_day["usage"][0]["invocations"] == 40
    by_fn = summarise(rows, "function", H, None, load_prices("lambda"))
    assert [u["function"] for u in by_fn["usage"]] == sorted("fg", key=lambda f: -sum(
        r["mb_ms"] for r in rows if r["function"] == f))  # biggest first
    total = by_fn["total"]
    assert total["gb_seconds"] == pytest.approx(total["mb_ms"] / 1024 / 1000, abs=1e-6)
    assert total["cost"] == pytest.approx(total["mb_ms"] / 1024 / 1000 * 0.0000166667 + 40 / 1e6 * 0.20, abs=1e-6)

    assert await store.prune_usage(H + 3600) == 2  # the first hour's rows go
    assert {r["hour"] for r in await store.list_usage()} == {H + 3600}


async def test_the_background_flush_writes_the_sums_every_interval_a_reader_at_once(store: Store) -> None:
    rec = ActivationRecorder(store)
    rec.meter = UsageMeter(store, interval=3600)
    rec.record(act(1, "f", H, 5.0))
    await rec.flush(background=True)  # the record is stored, its sums wait for the interval
    assert len(await store.list_activations()) == 1
    assert await store.list_usage() == []
    await rec.flush()  # a reader's flush (GET /v1/usage) writes them
    assert [r["invocations"] for r in await store.list_usage()] == [1]


async def test_a_failed_usage_write_keeps_the_sums(store: Store) -> None:
    meter = UsageMeter(store)
    meter.add([act(1, "f", H, 5.0)])
    async with store.engine.begin() as conn:  # the table is gone: the write fails, the sums stay for the next flush
        await conn.execute(text("DROP TABLE usage"))
    with pytest.raises(DBAPIError):
        await meter.flush()
    assert meter.pending[(NAMESPACE, "f", H)][0] == 1


def test_price_tables(tmp_path: Path) -> None:
    assert {"lambda", "alibaba-fc", "tencent-scf"} <= set(price_tables())
    for name in price_tables():
        table = load_prices(name)
        assert table["sample"] and table["as_of"] and table["currency"]  # samples, dated, in a currency
    own = tmp_path / "mine.toml"
    own.write_text('name = "ours"\ncurrency = "EUR"\nper_gb_second = 0.00001\nper_million_requests = 0.1\n')
    assert load_prices(str(own))["per_gb_second"] == 0.00001
    with pytest.raises(ValueError, match="neither a price table"):
        load_prices("nosuch")
    with pytest.raises(ValueError, match="no price table"):
        load_prices(str(own), files=False)  # (the node never reads a path a caller names)
    own.write_text("per_gb_second = -1\nper_million_requests = 0.1\n")
    with pytest.raises(ValueError, match="per_gb_second must be a number"):
        load_prices(str(own))
    own.write_text("per_gb_second = [")
    with pytest.raises(ValueError, match="TOML"):
        load_prices(str(own))


async def test_a_record_the_database_refuses_is_not_metered(store: Store) -> None:
    rec = ActivationRecorder(store)
    rec.meter = UsageMeter(store)
    rec.record(act(1, "f", H, 5.0))
    rec.record(Activation(id="poison", function="f", revision=1, trigger="http", start=H, duration_ms=9.0,
                          instance="i1", memory_mb=128, result=object()))  # type: ignore[arg-type]
    await rec.flush()  # the poison record is dropped (logged); the other is stored and metered
    assert [a.id for a in await store.list_activations()] == ["a1"]
    assert [(r["invocations"], r["mb_ms"]) for r in await store.list_usage()] == [(1, 5 * 128)]
