"""Every background loop of the node survives an exception in one item: it logs it and goes on with the
next item (`polyfn.loops.one_item`). One test per loop: a fault is injected into one item (or one pass), and
the test checks that the other items are still handled and the loop is still running.

Real objects where they run here (the queue file, an HTTP receiver, sockets, the event loop's timers);
small fakes for the collaborators a loop only calls.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest

from polyfn.config import Settings
from polyfn.loops import one_item

from .. import needs
from ..e2e.test_callbacks import Receiver


async def until(cond: Any, timeout: float = 30.0) -> bool:
    """Polls `cond` (a plain or an async callable) until it holds or `timeout` passes."""

    async def holds() -> bool:
        got = cond()
        return bool(await got if asyncio.iscoroutine(got) else got)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await holds():
            return True
        await asyncio.sleep(0.01)
    return await holds()


async def stop(task: asyncio.Task[Any]) -> None:
    assert not task.done(), f"the loop ended: {task.exception() if not task.cancelled() else 'cancelled'}"
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def test_one_item_logs_swallows_and_rate_limits_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("polyfn.test.loops")
    with caplog.at_level(logging.ERROR, "polyfn.test.loops"):
        for i in range(3):
            with one_item(log, "item %d of the test loop", i) as guard:
                raise ValueError("boom")
            assert guard.failed
        with one_item(log, "item %d of the test loop", 9) as ok:
            pass
    assert not ok.failed
    assert [r.getMessage() for r in caplog.records] == [
        "item 0 of the test loop failed; going on",
        "item 1 of the test loop failed; going on: ValueError: boom",
        "item 2 of the test loop failed; going on: ValueError: boom"]
    assert caplog.records[0].exc_info and not caplog.records[1].exc_info  # one traceback, then one line each
    with pytest.raises(KeyboardInterrupt), one_item(log, "never swallowed"):
        raise KeyboardInterrupt  # (nor CancelledError: only Exception)


# -- the async queue ----------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.srv.shutdown()


async def _queue(tmp_path: Path, registry: Any = None, invoker: Any = None) -> Any:
    from polyfn.queue.builtin import QueueDB
    from polyfn.queue.dispatcher import AsyncQueue

    q = AsyncQueue(Settings(data_dir=tmp_path, callback_backoff=60), invoker, registry)
    q.db = q.callbacks.db = await QueueDB.open(tmp_path / "queue.db")
    q.callbacks._http = httpx.AsyncClient(timeout=5)
    return q


async def test_callback_loop_settles_a_bad_row_and_delivers_the_others(tmp_path: Path, receiver: Receiver) -> None:
    q = await _queue(tmp_path)
    cb = q.callbacks  # queue/callbacks.py: the delivery loop over the queue file
    for cid, url in [("a-bad-url", "http://[::1"), ("b-bug", receiver.url()), ("c-good", receiver.url())]:
        await q.db.add_callback(cid, url, b'{"id": "%s"}' % cid.encode(), 0.0)
    real_post = cb._post

    async def post(url: str, payload: bytes, job_id: str, headers: str | None = None) -> str | None:
        if job_id == "b-bug":
            raise RuntimeError("a bug with this row")
        return await real_post(url, payload, job_id, headers)

    cb._post = post
    fail_reads = [1]
    real_pending = q.db.pending_callbacks

    async def pending() -> Any:
        if fail_reads:  # the first pass cannot even read the file
            fail_reads.pop()
            raise OSError("disk hiccup")
        return await real_pending()

    q.db.pending_callbacks = pending
    task = asyncio.create_task(cb._loop())
    try:
        # (the failed pass is tried again a second later)
        assert await until(lambda: [g["body"] for g in receiver.got] == [b'{"id": "c-good"}']), receiver.got

        async def settled() -> bool:  # (the receiver records the body before its answer reaches the loop)
            return (await q.db.get_callback("c-good"))["state"] != "pending"

        assert await until(settled)
        states = {cid: await q.db.get_callback(cid) for cid in ("a-bad-url", "b-bug", "c-good")}
        assert states["a-bad-url"]["state"] == "failed" and "invalid_callback_url" in states["a-bad-url"]["last_error"]
        assert states["b-bug"]["state"] == "pending" and "RuntimeError" in states["b-bug"]["last_error"]
        assert states["c-good"]["state"] == "delivered"
        await q.db.add_callback("d-later", receiver.url(), b"{}", time.time())
        cb.wake()
        assert await until(lambda: len(receiver.got) == 2)
    finally:
        await stop(task)
        await cb.close()
        await q.db.close()


async def test_a_vendor_callback_shape_that_fails_gives_polyfns_shape(tmp_path: Path) -> None:
    """`_complete` builds every finished job's callback in one batch: one job's failing shape must not put
    the batch back for ever (it did: every completion of the node stalled behind it)."""
    import json

    from polyfn.invoker import Outcome
    from polyfn.queue.builtin import Job
    from polyfn.queue.callbacks import CALLBACK_FORMATS, Callbacks

    def broken(job: Any, out: Any, status: str, reason: Any) -> Any:
        raise KeyError("x-call-id")

    CALLBACK_FORMATS["test-broken"] = broken
    try:
        job = Job(id="j1", function="f", trigger="test-broken", body=b"", enqueued_at=0, not_before=0, attempt=1)
        body, headers = Callbacks.payload(job, Outcome(200, [], b'"ok"'), "success")
    finally:
        del CALLBACK_FORMATS["test-broken"]
    assert headers is None and json.loads(body)["result"] == "ok"


class _Active:
    def __init__(self) -> None:
        spec = SimpleNamespace(max_instances=2, concurrency=1, max_event_age=3600)
        self.revision = SimpleNamespace(spec=spec)


class _Registry:
    def __init__(self, *names: str) -> None:
        self.functions = {n: _Active() for n in names}

    def get(self, name: str) -> Any:
        return self.functions.get(name)


async def test_dispatch_loop_survives_a_failed_claim(tmp_path: Path) -> None:
    from polyfn.queue.builtin import Job
    from polyfn.queue.filefeed import FileFeed

    started: list[str] = []
    q = await _queue(tmp_path, _Registry("f"))
    q.dispatch = lambda job, feed: started.append(job.id)
    feed = FileFeed(q.db, q, time.time)
    real_claim = q.db.claim_ready
    calls = [0]

    async def claim(*a: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise OSError("database is locked")
        return await real_claim(*a)

    q.db.claim_ready = claim
    await q.db.enqueue([Job(id="j1", function="f", body=b"", enqueued_at=0, not_before=0)])
    feed.start()
    try:
        assert await until(lambda: started == ["j1"], 5)
    finally:
        q._stopping = True
        feed.room_freed()
        await asyncio.wait_for(feed.task, 5)
        await q.callbacks.close()
        await q.db.close()


async def test_stream_feed_survives_one_bad_job(tmp_path: Path) -> None:
    """A job pulled from the cluster's stream that fails to be taken (here: `dispatch` raises for it) is
    logged; the other jobs of the same pull start, and the feeder keeps pulling."""
    from polyfn.queue.builtin import Job
    from polyfn.queue.streamfeed import StreamFeed

    q = await _queue(tmp_path, _Registry("f"))
    started: list[str] = []

    def dispatch(job: Any, feed: Any) -> None:
        if job.id == "bad":
            raise RuntimeError("a bug with this job")
        started.append(job.id)

    q.dispatch = dispatch
    pulls = [[("bad", 0), ("good", 0)], [("later", 0)]]

    class Msg:
        async def nak(self, delay: float = 0) -> None:
            pass

    class Jobs:
        async def fetch(self, function: str, n: int, timeout: float, max_bytes: int = 0) -> list[Any]:
            if not pulls:
                await asyncio.sleep(timeout)
                return []
            return [(Job(id=i, function=function, body=b"", enqueued_at=0, not_before=nb), Msg())
                    for i, nb in pulls.pop(0)]

        def over_bytes(self, function: str) -> bool:
            return False

    feed = StreamFeed(Jobs(), q, _Registry("f"))  # type: ignore[arg-type]
    task = asyncio.create_task(feed._feed("f"))
    try:
        assert await until(lambda: started == ["good", "later"])
    finally:
        await stop(task)
        await q.callbacks.close()
        await q.db.close()


# -- activation records, metrics, keys, OTLP ------------------------------------------------------------------


def _act(i: int, function: str = "f") -> Any:
    from polyfn.model import Activation, LogLine

    return Activation(id=f"a{i}", function=function, revision=1, trigger="http", start=float(i),
                      logs=[LogLine(0.0, "stdout", "x")])


async def test_recorder_loop_survives_a_failed_write_and_a_failing_follower() -> None:
    from polyfn.observe.recorder import ActivationRecorder

    class Store:
        def __init__(self) -> None:
            self.stored: list[str] = []
            self.fail = 1

        async def add_activations(self, acts: list[Any]) -> None:
            if self.fail:
                self.fail -= 1
                raise OSError("disk full")
            self.stored += [a.id for a in acts]

        async def prune(self, *a: Any) -> int:
            raise AssertionError("not yet")

    store = Store()
    rec = ActivationRecorder(store, interval=0.01)
    seen: list[str] = []

    def bad_follower(act: Any) -> None:
        raise RuntimeError("a follower's bug")

    rec.follow("f", bad_follower)
    rec.follow("f", lambda act: seen.append(act.id))
    rec.start()
    try:
        rec.record(_act(1))  # the follower's error does not reach the invocation that recorded it
        assert seen == ["a1"]
        assert await until(lambda: store.stored == ["a1"], 5)  # the first write failed; the loop went on
        rec.record(_act(2))
        assert await until(lambda: store.stored == ["a1", "a2"], 5)
        assert rec._task is not None and not rec._task.done()
    finally:
        await rec.stop()


async def test_metrics_sampler_survives_a_failed_sample() -> None:
    from polyfn.observe.metrics import Metrics

    calls = [0]

    def pools() -> list[Any]:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("a pool's bug")
        return []

    m = Metrics(pools, 1024)
    m.start(interval=0.01)
    try:
        assert await until(lambda: calls[0] >= 3)
        assert m._sampler is not None and not m._sampler.done()
    finally:
        await m.stop()


async def test_key_ring_loop_survives_a_database_error() -> None:
    from polyfn.auth.keys import KeyRing

    class Store:
        loads = 0
        fail = 1

        async def touch_keys(self, used: dict[str, float]) -> None:
            if self.fail:
                self.fail -= 1
                raise OSError("database is locked")

        async def list_keys(self) -> list[Any]:
            self.loads += 1
            return []

        async def changed_keys(self, since: float) -> list[Any]:  # (the reads between full ones)
            self.loads += 1
            return []

    store = Store()
    ring = KeyRing(store)  # type: ignore[arg-type]
    task = asyncio.create_task(ring._loop(0.01))
    try:
        assert await until(lambda: store.loads >= 2)
    finally:
        await stop(task)


async def test_otlp_loop_survives_a_failed_export() -> None:
    needs.module("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export import SpanExportResult

    from polyfn.observe.otlp import OtlpExporter

    exp = OtlpExporter("http://127.0.0.1:1/v1/traces")
    calls = [0]

    class Exporter:
        def export(self, spans: Any) -> Any:
            calls[0] += 1
            if calls[0] == 1:
                raise ConnectionError("collector away")
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    exp._exporter = Exporter()
    exp.start()
    try:
        exp.submit([_act(1)])
        exp.submit([_act(2)])
        assert await until(lambda: exp.exported == 1 and exp.failed == 1)
        exp.submit([_act(3)])
        assert await until(lambda: exp.exported == 2)
    finally:
        await exp.stop()


# -- the scheduler: pools, deadlines, zygote reports, cluster sync -----------------------------------------------


async def test_reaper_loop_survives_one_pools_bug() -> None:
    from polyfn.scheduler.ticker import Ticker

    class Pool:
        def __init__(self, name: str, bad: bool) -> None:
            self.revision = SimpleNamespace(key=f"{name}@1")
            self.bad, self.reaped = bad, 0
            self.instances = [object()]  # (live: the tick skips dormant pools, ticker.dormant)

        def autoscale(self, now: float) -> None:
            pass

        def reap(self, now: float) -> None:
            self.reaped += 1
            if self.bad:
                raise RuntimeError("a pool's bug")

    bad, good = Pool("bad", True), Pool("good", False)
    task = asyncio.create_task(Ticker(Settings(autoscale_interval=1), {bad, good}).run())  # type: ignore[arg-type]
    try:
        assert await until(lambda: good.reaped >= 2 and bad.reaped >= 2, 5)
    finally:
        await stop(task)


async def test_deadline_sweep_survives_a_failing_expiry() -> None:
    from polyfn.scheduler.deadlines import Deadlines

    loop = asyncio.get_running_loop()
    d = Deadlines()
    expired: list[str] = []

    def expire(name: str) -> None:
        if name == "bad":
            raise RuntimeError("an expiry's bug")
        expired.append(name)

    now = time.perf_counter()
    for name, due in [("bad", now), ("good", now), ("later", now + 0.1)]:
        d.add(loop.create_future(), due, expire, name)
    assert await until(lambda: expired == ["good", "later"], 2)
    assert len(d) == 0


async def test_idle_connection_sweep_survives_a_failing_close() -> None:
    from polyfn.gateway.http import IdleConnections

    idle = IdleConnections(asyncio.get_running_loop())
    idle.SWEEP = 0.01  # type: ignore[misc]
    closed: list[str] = []

    class Proto:
        def __init__(self, name: str) -> None:
            self.name = name

        def timeout_keep_alive_handler(self) -> None:
            if self.name == "bad":
                raise OSError("transport already gone")
            closed.append(self.name)

    idle.arm(Proto("bad"), 0)  # type: ignore[arg-type]
    idle.arm(Proto("good"), 0)  # type: ignore[arg-type]
    assert await until(lambda: closed == ["good"], 2)
    idle.arm(Proto("next"), 0)  # type: ignore[arg-type]
    assert await until(lambda: closed == ["good", "next"], 2)


async def test_zygote_reader_survives_a_failing_exit_handler(tmp_path: Path) -> None:
    from polyfn.instances.zygote import ZygoteClient
    from polyfn.protocol.zygote import Exited

    seen: list[int] = []

    def on_exit(pid: int, status: int) -> None:
        if pid == 1:
            raise RuntimeError("an exit handler's bug")
        seen.append(pid)

    z = ZygoteClient("python", tmp_path / "z.log", on_exit)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    z.sock = ours
    enc = msgspec.msgpack.Encoder()
    for pid in (1, 2, 3):
        theirs.send(enc.encode(Exited(pid=pid, status=0)))
    z._on_readable()
    assert seen == [2, 3]
    ours.close()
    theirs.close()


async def test_cluster_sync_pass_survives_one_functions_failure() -> None:
    from polyfn.scheduler.sync import ClusterSync

    def rev(name: str) -> Any:
        return SimpleNamespace(function=name, number=1, code_sha256="x", created_at=1.0, key=f"{name}@1")

    class Store:
        async def list_functions(self) -> list[Any]:
            return [SimpleNamespace(name=n, revision=1, code_sha256="x", updated_at=1.0) for n in ("a", "b")]

        async def get_current_revision(self, name: str) -> Any:
            return rev(name)

    class Registry:
        functions: dict[str, Any] = {}

        def get(self, name: str) -> Any:
            return self.functions.get(name)

        def activate(self, r: Any) -> None:
            if r.function == "a":
                raise RuntimeError("a registry bug with a")
            self.functions[r.function] = SimpleNamespace(revision=r)

    class Deployer:
        async def localise(self, r: Any) -> Any:
            return r

    registry = Registry()
    sync = ClusterSync(Store(), registry, Deployer(), 0.01)  # type: ignore[arg-type]
    assert await sync.sync_once() == 1
    assert set(registry.functions) == {"b"}


# -- triggers ------------------------------------------------------------------------------------------------------


async def test_delivery_dead_letters_what_it_cannot_deliver_instead_of_raising(tmp_path: Path) -> None:
    """A bug with a broker message (here: the invoker raises) used to escape `deliver`: the runner restarted,
    the broker redelivered the same message, and the trigger was stuck on it. Now the messages are dead
    letters with the reason, counted, and `deliver` returns (the runner acknowledges and goes on)."""
    from polyfn.queue.builtin import QueueDB
    from polyfn.triggers.base import Context, Runner
    from polyfn.triggers.delivery import Interrupted, Message, deliver
    from polyfn.triggers.store import Trigger

    db = await QueueDB.open(tmp_path / "queue.db")

    class Invoker:
        async def call(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("an invoker bug")

    ctx = Context(settings=Settings(data_dir=tmp_path), invoker=Invoker(), queue=SimpleNamespace(db=db),  # type: ignore[arg-type]
                  registry=_Registry("f"), store=None)  # type: ignore[arg-type]
    runner = Runner(Trigger(id="t1", function="f", kind="nats", config={}, created_at=0), ctx)
    try:
        await deliver(runner, "nats", "subj", [Message(id="m1", body=b"one"), Message(id="m2", body=b"two")])
        dead = await db.dead()
        assert len(dead) == 2 and {d.reason for d in dead} == {"delivery_failed"}
        assert runner.dead_lettered == 2 and runner.last_error["reason"] == "delivery_failed"
        assert "an invoker bug" in dead[0].last_error["message"]

        class Stopping:
            async def call(self, *a: Any, **k: Any) -> Any:
                raise Interrupted()

        ctx.invoker = Stopping()  # type: ignore[assignment]
        with pytest.raises(Interrupted):  # the node stopping is not a failure: the broker redelivers
            await deliver(runner, "nats", "subj", [Message(id="m3", body=b"three")])
    finally:
        await db.close()
