"""An ordered instance's calls behind the one it runs (instance.py `behind`, `kill`, `connection_lost`), against the
node's real handle on one end of a socketpair and the test as the instance on the other: which calls may have
started when the connection ends, and a kill with calls behind that lets every frame the instance sent be read."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from polyfn.instances.instance import Instance, InstanceGone, NotStarted, State
from polyfn.protocol import Invoke, Ready, Result, encode


async def attached(ordered: bool) -> tuple[Instance, socket.socket]:
    ours, theirs = socket.socketpair()
    inst = Instance("i", "f:1", lambda _: None)
    await inst.attach(ours)
    theirs.sendall(encode(Ready(0, 1.0, "", ordered)))
    await inst.wait_ready(5)
    inst.inflight = 2
    return inst, theirs


def invoke(inst: Instance) -> asyncio.Future[Result]:
    return inst.invoke(Invoke(0, "a", "event", 0.0, "POST", "/", "", [], b"x"))


async def ended(fut: asyncio.Future[Result]) -> BaseException | Result:
    try:
        return await asyncio.wait_for(fut, 5)
    except InstanceGone as e:
        return e


@pytest.mark.parametrize("ordered", [True, False])
async def test_calls_behind_the_oldest_never_started_when_an_ordered_instance_ends(ordered: bool) -> None:
    inst, theirs = await attached(ordered)
    assert inst.ordered is ordered
    a, b, c = invoke(inst), invoke(inst), invoke(inst)
    assert (inst.behind(a), inst.behind(b), inst.behind(c)) == (False, ordered, ordered)
    await asyncio.sleep(0.01)  # (the frames are written)
    theirs.close()  # (it died running a: EOF after every frame it sent)
    got = [await ended(f) for f in (a, b, c)]
    assert type(got[0]) is InstanceGone
    assert [type(g) for g in got[1:]] == [NotStarted if ordered else InstanceGone] * 2


async def test_a_call_behind_one_that_answered_may_have_started() -> None:
    inst, theirs = await attached(True)
    a, b = invoke(inst), invoke(inst)
    await asyncio.sleep(0.01)
    theirs.sendall(encode(Result(1, body=b"a")))  # a answered: b is the one it runs now
    res = await asyncio.wait_for(a, 5)
    assert res.body == b"a" and not inst.behind(b)
    theirs.close()
    assert type(await ended(b)) is InstanceGone  # (a crash: it may have begun)


async def test_a_kill_with_calls_behind_reads_what_the_instance_sent_before_the_connection_ends() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        inst, theirs = await attached(True)
        inst.pid = proc.pid
        a, b, c = invoke(inst), invoke(inst), invoke(inst)
        await asyncio.sleep(0.01)  # (the frames are written)
        a.set_exception(InstanceGone("timed out"))  # (the invoker's deadline, as `_on_deadline` does)
        inst.kill("timed out after 1 s")
        assert proc.wait(5) == -9 and inst.state is State.STOPPING
        theirs.sendall(encode(Result(1, body=b"a")))  # sent before it died: read, so b may have started
        theirs.close()
        got = [await ended(f) for f in (b, c)]
        assert [type(g) for g in got] == [InstanceGone, NotStarted], got
        assert inst.state is State.DEAD
        with pytest.raises(InstanceGone):
            a.result()
    finally:
        proc.kill()
        proc.wait()


async def test_a_connection_ended_by_a_failed_write_may_have_left_frames_unread() -> None:
    inst, theirs = await attached(True)
    a, b = invoke(inst), invoke(inst)
    await asyncio.sleep(0.01)
    theirs.sendall(encode(Result(1, body=b"a")))
    theirs.close()
    inst.connection_lost(BrokenPipeError())  # (as the transport reports a write to a closed peer, unread frames left)
    assert [type(await ended(f)) for f in (a, b)] == [InstanceGone, InstanceGone]  # b may have started: a crash


async def test_a_kill_with_no_call_behind_cuts_the_connection_at_once() -> None:
    inst, theirs = await attached(True)
    a = invoke(inst)
    inst.kill("cancelled")  # (no pid: nothing to signal)
    assert type(await ended(a)) is InstanceGone
    theirs.close()
