"""The node's isolation choice and its memory budget (instances/decisions.py) and a pool's reap plan
(scheduler/decisions.py) as pure decisions, table-tested."""

from __future__ import annotations

import pytest

from polyfn.instances.decisions import decide_isolation, reserve
from polyfn.scheduler.decisions import reap

ALL_OK = {"mount": "", "root": "", "pid": "", "net": "", "uid": "", "seccomp": "", "userns": ""}


@pytest.mark.parametrize(("probe", "off", "root", "layers", "namespaces", "net", "parts", "skipped"), [
    # root on a host that allows everything: every layer, the network namespace entered like the others
    (ALL_OK, (), True, {"mount", "root", "pid", "net", "uid", "seccomp"}, {"mount", "pid", "net"}, True,
     ["mount ns", "own root fs", "pid ns", "net ns", "per-function uid", "seccomp"], []),
    # not root: a user namespace carries the others; the network namespace is made per instance
    (ALL_OK, (), False, {"mount", "root", "pid", "net", "uid", "seccomp"}, {"user", "mount", "pid"}, True,
     ["mount ns", "own root fs", "pid ns", "net ns", "per-function uid", "seccomp"], []),
    # not root and no user namespaces: what needs the mount namespace is off, and says so
    ({**ALL_OK, "userns": "unprivileged user namespaces are off", "mount": "EPERM"}, (), False, {"net", "seccomp"},
     {"net"}, True, ["net ns", "seccomp"],
     ["mount (EPERM)", "root (needs the mount namespace)", "pid (needs the mount namespace)",
      "uid (needs the mount namespace)"]),
    # configuration turns layers off; turning off mount also turns off the user namespace
    (ALL_OK, ("mount", "seccomp"), False, {"net"}, {"net"}, True, ["net ns"],
     ["mount (disabled by configuration)", "root (needs the mount namespace)", "pid (needs the mount namespace)",
      "uid (needs the mount namespace)", "seccomp (disabled by configuration)"]),
    # a layer the probe did not report is off ("not probed"), never on by default
    ({"mount": "", "userns": ""}, (), True, {"mount"}, {"mount"}, False, ["mount ns"],
     ["root (not probed)", "pid (not probed)", "net (not probed)", "uid (not probed)", "seccomp (not probed)"]),
    # root: the probe's user-namespace answer does not matter
    ({**ALL_OK, "userns": "off", "net": "no veth"}, ("uid",), True, {"mount", "root", "pid", "seccomp"},
     {"mount", "pid"}, False, ["mount ns", "own root fs", "pid ns", "seccomp"],
     ["net (no veth)", "uid (disabled by configuration)"]),
])
def test_isolation_follows_the_probe_the_configuration_and_root(probe, off, root, layers, namespaces, net, parts,
                                                                 skipped) -> None:
    got = decide_isolation(probe, off, root)
    assert (got.layers, got.namespaces, got.net, got.parts, got.skipped) == (layers, namespaces, net, parts, skipped)


IDLE = [(30.0, 256, "c"), (10.0, 128, "a"), (20.0, 512, "b")]  # (last used, MB, instance)


@pytest.mark.parametrize(("need", "mine", "reserved", "budget", "share", "refused", "evict", "short"), [
    (128, 0, 0, 1024, 50, False, [], 0),  # room
    (128, 0, 896, 1024, 100, False, [], 0),  # exactly full
    (256, 0, 896, 1024, 100, False, ["a"], 0),  # the least recently used first, as few as make room
    (512, 0, 896, 1024, 100, False, ["a", "b"], 0),  # 384 short: a (128) is not enough, then b
    (1024, 0, 1024, 1024, 100, False, ["a", "b", "c"], 128),  # all of them and still 128 short
    (2048, 0, 0, 1024, 100, True, [], 0),  # more than the whole node: never
    (256, 512, 512, 2048, 25, True, [], 0),  # over the function's share (512 + 256 > 512): refused
    (1024, 0, 0, 2048, 25, False, [], 0),  # the first instance of a function is never over its share
])
def test_the_memory_budget_evicts_least_recently_used_or_refuses(need, mine, reserved, budget, share, refused,
                                                                 evict, short) -> None:
    got = reserve(need, mine, reserved, budget, share, IDLE)
    assert (got.refused, got.evict, got.short) == (refused, evict, short)


# idle instances as (last used, in flight), at now = 1000; keep-alive 600 s unless said
A, B, C = (100.0, 0), (700.0, 0), (990.0, 0)


@pytest.mark.parametrize(("idle", "live", "floor", "prewarm", "keepalive", "busy", "last_end", "desired", "plan"), [
    ([C, A, B], 3, 0, 0, 600, False, 0, None, [(1, True)]),  # only A was idle for the keep-alive
    ([C, A, B], 3, 1, 0, 300, False, 0, None, [(1, True), (2, True)]),  # A and B, oldest first
    ([C, A, B], 3, 3, 0, 60, False, 0, None, []),  # never below the floor (min_instances)
    ([C, A, B], 3, 2, 0, 60, False, 0, None, [(1, True)]),  # down to the floor, least recently used first
    ([(100.0, 1), B], 2, 0, 0, 600, False, 0, None, []),  # an instance with work in flight stays
    # the autoscaler wants 1: B (idle 300 s ≥ 30 s) goes as surplus; C (idle 10 s) is too fresh to
    ([C, B], 2, 0, 0, 600, False, 0, 1, [(1, False)]),
    ([C, B], 2, 0, 0, 600, False, 0, 2, []),  # it wants both
    # the keep-alive policy keeps its most recently used one while its window lasts (last_end 950)
    ([C, B], 2, 0, 0, 600, False, 950.0, 0, [(1, False)]),
    ([(900.0, 0), (800.0, 0)], 2, 0, 0, 600, False, 0, 0, [(1, False), (0, False)]),  # nothing to keep warm
    # a pre-warming policy unloads right after use once the function is idle; not while it is busy
    ([C], 1, 0, 120, 600, False, 990.0, None, [(0, True)]),
    ([C], 1, 0, 120, 600, True, 990.0, None, []),
])
def test_the_reap_plan_follows_keep_alive_floor_and_autoscaler(idle, live, floor, prewarm, keepalive, busy, last_end,
                                                              desired, plan) -> None:
    assert reap(1000.0, idle, live, floor, prewarm, keepalive, busy, last_end, desired) == plan
