"""The instance manager's parts on their own (no processes): exits routed by pid (instances/exits.py), the
memory reserved per pool (budget.py), the relay's endpoints (sandbox/relay.py), spawns through a full zygote
channel (zygote.py), a function zygote's cgroup sized for the spawns in flight and an offered child's handle
made ahead (fnstart.py)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from polyfn.config import Settings
from polyfn.instances import fnstart
from polyfn.instances.budget import reserved_by
from polyfn.instances.cpushare import CpuShares
from polyfn.instances.exits import Exits
from polyfn.instances.fnzygote import FunctionZygote
from polyfn.instances.instance import Instance, State
from polyfn.instances.manager import InstanceManager
from polyfn.instances.sandboxing import NodeSandbox
from polyfn.instances.zygote import ZygoteClient
from polyfn.protocol import Ready, encode
from polyfn.protocol.spec import InstanceSpec
from polyfn.protocol.zygote import Exited, Offered, Take
from polyfn.sandbox import cgroups
from polyfn.sandbox.plan import SandboxPlan
from polyfn.sandbox.relay import LOOPBACK, endpoints


def _exits() -> Exits:
    return Exits(NodeSandbox(Settings()), CpuShares(lambda pid, shares: None), None)


async def test_an_exit_reported_before_its_start_is_delivered_when_the_pid_is_tracked() -> None:
    exits = _exits()
    exits.on_exit(4242, 3 << 8)  # the zygote's report came first
    inst = Instance("i-1", "f:1", on_lost=lambda _: None)
    assert inst.exit_status is None
    exits.track(4242, inst)
    assert inst.exit_status == 3 << 8 and "code 3" in inst.describe_exit()
    assert 4242 not in exits.by_pid  # delivered once, then forgotten


async def test_an_exit_is_routed_to_its_instance_and_unknown_pids_wait() -> None:
    exits = _exits()
    a, b = (Instance(f"i-{n}", "f:1", on_lost=lambda _: None) for n in (1, 2))
    exits.track(1, a)
    exits.track(2, b)
    exits.on_exit(2, 9)  # killed by SIGKILL
    assert b.exit_status == 9 and a.exit_status is None and set(exits.by_pid) == {1}
    exits.on_exit(3, 0)  # nobody's yet
    c = Instance("i-3", "f:1", on_lost=lambda _: None)
    exits.track(3, c)
    assert c.exit_status == 0


def _pool(memory: int, starting: int, states: list[State]) -> SimpleNamespace:
    return SimpleNamespace(revision=SimpleNamespace(spec=SimpleNamespace(memory=memory)), starting=starting,
                           instances=[SimpleNamespace(state=s) for s in states])


@pytest.mark.parametrize(("pools", "reserved"), [
    ([], 0),
    ([_pool(128, 0, [State.READY, State.READY])], 256),
    ([_pool(128, 1, [State.READY])], 256),  # a starting instance reserves its memory already
    ([_pool(256, 0, [State.READY, State.STOPPING, State.DEAD])], 256),  # closing ones do not
    ([_pool(128, 0, [State.READY]), _pool(512, 2, [])], 128 + 1024),
])
def test_memory_reserved_by_pools(pools: list[SimpleNamespace], reserved: int) -> None:
    assert reserved_by(pools) == reserved


@pytest.mark.parametrize(("listening", "targets", "urls"), [
    ([("0.0.0.0", 8000)], {8000: (LOOPBACK, 8000)}, {f"http://{LOOPBACK}:8000": f"http://{LOOPBACK}:8000"}),
    ([("10.1.2.3", 8000), ("", 9000)], {8000: ("10.1.2.3", 8000), 9000: (LOOPBACK, 9000)},
     {"http://10.1.2.3:8000": f"http://{LOOPBACK}:8000", f"http://{LOOPBACK}:9000": f"http://{LOOPBACK}:9000"}),
    ([("::1", 8000)], {8000: ("::1", 8000)}, {"http://[::1]:8000": f"http://{LOOPBACK}:8000"}),
    ([("0.0.0.0", 0), ("0.0.0.0", 0)], {}, {}),  # no port: nothing to relay
])
def test_relay_endpoints(listening: list[tuple[str, int]], targets: dict, urls: dict) -> None:
    assert endpoints(listening) == (targets, urls)



async def test_spawns_through_a_full_control_channel_wait_for_room_and_all_go_through() -> None:
    """A burst fills the zygote's control channel: each spawn waits until the zygote has read some (one
    writability future, not a 1 ms poll) and none is lost or sent twice."""

    class Blob(msgspec.Struct):
        data: str

    z = ZygoteClient("test", Path(os.devnull), lambda pid, status: None)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.setblocking(False)
    z.sock = ours
    z.proc = SimpleNamespace(poll=lambda: None, kill=lambda: None, wait=lambda: 0)  # type: ignore[assignment]
    seen: list[int] = []

    async def slow_zygote() -> None:
        await asyncio.sleep(0.1)  # the channel fills first
        while len(seen) < 300:
            try:
                msg, fds, _, _ = socket.recv_fds(theirs, 1 << 20, 4)
            except BlockingIOError:
                await asyncio.sleep(0.005)
                continue
            for fd in fds:
                os.close(fd)
            req = msgspec.msgpack.decode(msg)[1]
            seen.append(req)
            z._pending.pop(req).set_result(1000 + req)

    conn = socket.socket()
    try:
        reader = asyncio.ensure_future(slow_zygote())
        pids = await asyncio.wait_for(asyncio.gather(*[z.spawn(Blob("x" * 4000), conn) for _ in range(300)]), 30)
        await reader
    finally:
        conn.close()
        z._lost()
        theirs.close()
    assert sorted(pids) == [1000 + r for r in range(1, 301)] and len(set(seen)) == 300


async def test_a_function_zygotes_cgroup_is_sized_for_the_spawns_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawns in flight count: a burst once sized the zygote's cgroup for its live instances only (2
    processes) while it forked 150, and the kernel's OOM killer took the zygote."""
    sizes: list[int] = []
    m = InstanceManager(Settings())
    m.sandbox = SimpleNamespace(cgroups=SimpleNamespace(dirs_for=lambda pid: [], version=1))  # type: ignore[assignment]
    monkeypatch.setattr(cgroups, "set_limits", lambda dirs, version, memory, *a: sizes.append(memory // 64))
    go = asyncio.Event()

    async def spawn(spec: object, conn: object) -> int:
        await go.wait()
        fz.instances += 1
        return 7

    fz = SimpleNamespace(instances=0, spawning=0, high_water=1, supervisor=5, key="f:1", spawn=spawn)
    ispec = InstanceSpec(instance_id="i", function="f", revision=1, flavor="plain", handler="h.handler",
                         code_dir="/c", sandbox=SandboxPlan(memory_mb=64))
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        tasks = [asyncio.ensure_future(fnstart.spawn_from_zygote(m, fz, ispec, t, o)) for o, t in pairs]  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert sizes == [3, 4, 5]  # the zygote, its offered child and the 1, 2, 3 instances being forked
        go.set()
        await asyncio.gather(*tasks)
        assert fz.spawning == 0 and fz.instances == 3
    finally:
        for a, b in pairs:
            a.close()
            b.close()


async def test_an_offered_childs_handle_is_made_ahead_and_closed_with_its_offer() -> None:
    """The server attaches to an offered child's connection as the offer comes (fnstart.prepare), so a start
    only writes `Take`; an offer that goes unused (its child ended, the zygote dropped) closes that handle."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fz = FunctionZygote("f:1", ours, 5, lambda z: None, lambda *a: None)
    fz.plan = SandboxPlan(memory_mb=64)
    m = SimpleNamespace(sandbox=SimpleNamespace(cgroups=None))
    fz.on_offer = lambda conn: fnstart.prepare(m, fz, conn)
    child, server_end = socket.socketpair()
    try:
        socket.send_fds(theirs, [msgspec.msgpack.encode(Offered(7, "fork from function zygote; offered"))],
                        [server_end.fileno()])
        server_end.close()
        for _ in range(100):
            if fz.prepared is not None and fz.prepared.done():
                break
            await asyncio.sleep(0.01)
        handle = fz.prepared.result()  # type: ignore[union-attr]
        assert handle.state is State.STARTING and fz.offer is not None and fz.offer[3].endswith("offered")
        theirs.send(msgspec.msgpack.encode(Exited(7, 0)))  # the offered child ended unused
        for _ in range(100):
            if handle.state is State.DEAD:
                break
            await asyncio.sleep(0.01)
        assert fz.offer is None and fz.prepared is None and handle.state is State.DEAD
        child.settimeout(5)
        assert child.recv(10) == b""  # its connection closed with the handle
    finally:
        child.close()
        fz.kill = lambda: None  # type: ignore[method-assign]  (no supervisor to signal)
        fz._lost()
        theirs.close()



async def _offering(worker: int) -> tuple[FunctionZygote, socket.socket, socket.socket, asyncio.subprocess.Process]:
    """A FunctionZygote whose zygote (`theirs`, played here) offers a child (a real process: its host pid is
    looked up among `worker`'s children) with its connection (`child`, the child's end)."""
    sleeper = await asyncio.create_subprocess_exec("sleep", "30")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fz = FunctionZygote("f:1", ours, 5, lambda z: None, lambda *a: None)
    fz.plan = SandboxPlan(memory_mb=64)
    m = SimpleNamespace(sandbox=SimpleNamespace(cgroups=None))
    fz.on_offer = lambda conn: fnstart.prepare(m, fz, conn)
    fz.name_instance = lambda: "f-1-1"
    fz.worker = worker
    child, server_end = socket.socketpair()
    socket.send_fds(theirs, [msgspec.msgpack.encode(Offered(sleeper.pid, "fork from function zygote; offered"))],
                    [server_end.fileno()])
    server_end.close()
    for _ in range(100):
        if fz.offer is not None:
            break
        await asyncio.sleep(0.01)
    child.settimeout(5)
    return fz, theirs, child, sleeper


async def _close(fz: FunctionZygote, theirs: socket.socket, child: socket.socket,
                 sleeper: asyncio.subprocess.Process) -> None:
    child.close()
    sleeper.kill()
    await sleeper.wait()
    fz.kill = lambda: None  # type: ignore[method-assign]  (no supervisor to signal)
    fz._lost()
    theirs.close()


async def test_a_deploy_names_the_zygotes_first_offer_and_waits_for_its_ready() -> None:
    """The first offer comes before the zygote's `ZygoteReady` (its host pid unknown then: not named). A deploy
    that built the zygote names it once the zygote is known (`name_offer`: `Take` with the child's host pid)
    and waits for its `Ready` (`offer_ready`), so the revision's first call takes an idle, named child."""
    fz, theirs, child, sleeper = await _offering(0)
    try:
        assert fz.offer is not None and fz.named == "" and not await fz.offer_ready(0.05)  # nothing to wait for
        fz.worker = os.getpid()  # (what `wait_ready` finds at the zygote's `ZygoteReady`)
        fz.name_offer()
        assert fz.named == "f-1-1" and fz.offer[1] == sleeper.pid
        n = int.from_bytes(child.recv(4), "little")
        take = msgspec.msgpack.decode(child.recv(n), type=Take)
        assert (take.instance_id, take.host_pid) == ("f-1-1", sleeper.pid)
        waiting = asyncio.ensure_future(fz.offer_ready(5))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # no `Ready` yet
        child.sendall(encode(Ready(0, 0.1, "fork from function zygote; offered")))
        assert await waiting
        taken = fz.take("unused")  # a start then takes the named child: its id is the one it was given
        assert taken is not None and taken[4] == "f-1-1"
    finally:
        await _close(fz, theirs, child, sleeper)


async def test_a_deploys_wait_for_the_first_offer_ends_when_the_child_does() -> None:
    """A child that ends before answering its `Take` ends the deploy's wait (False): it does not hang it."""
    fz, theirs, child, sleeper = await _offering(os.getpid())  # known: the offer is named as it comes
    try:
        assert fz.named == "f-1-1"
        waiting = asyncio.ensure_future(fz.offer_ready(5))
        await asyncio.sleep(0.05)
        child.close()  # the child ended before its `Ready`
        assert await asyncio.wait_for(waiting, 2) is False
    finally:
        await _close(fz, theirs, child, sleeper)
