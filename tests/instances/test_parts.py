"""The instance manager's parts on their own (no processes): exits routed by pid (instances/exits.py), the
memory reserved per pool (budget.py), the relay's endpoints (sandbox/relay.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from polyfn.config import Settings
from polyfn.instances.budget import reserved_by
from polyfn.instances.cpushare import CpuShares
from polyfn.instances.exits import Exits
from polyfn.instances.instance import Instance, State
from polyfn.instances.sandboxing import NodeSandbox
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
