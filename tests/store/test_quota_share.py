"""quota_share.ClusterUse on the real store (SQLite and PostgreSQL): two nodes publishing their use in `quota_use`
and reading each other's; a node that stops or goes stale stops counting; the nodes serving a namespace's calls
are counted; a refused start asks the others for their idle instances."""

from __future__ import annotations

from polyfn.quota_share import ClusterUse
from polyfn.store import Store


class Node:
    """One node's side: its use (as QuotaGuard.local_use gives it), what it was asked to release, its clock."""

    def __init__(self, store: Store, name: str):
        self.use: dict[str, tuple[int, int, int, int]] = {}
        self.released: list[str] = []
        self.now = 1000.0
        self.share = ClusterUse(store, name, lambda: dict(self.use), self.released.append, clock=lambda: self.now)


async def test_each_node_reads_the_others_use(store: Store) -> None:
    a, b = Node(store, "a"), Node(store, "b")
    a.use = {"team": (2, 256, 0, 0), "other": (1, 128, 1, 0)}
    await a.share.tick()
    assert a.share.others == {}  # (b has not published yet)
    b.use = {"team": (1, 512, 0, 0)}
    await b.share.tick()
    assert b.share.others == {"team": (2, 256, 0, 0), "other": (1, 128, 1, 0)}
    await a.share.tick()
    assert a.share.others == {"team": (1, 512, 0, 0)}

    a.use = {"team": (3, 384, 0, 0)}  # a rewrites its rows: what it no longer runs is gone
    await a.share.tick()
    await b.share.tick()
    assert b.share.others == {"team": (3, 384, 0, 0)}
    a.use = {}
    await a.share.tick()
    await b.share.tick()
    assert b.share.others == {}


async def test_the_nodes_serving_a_namespace_share_its_rate(store: Store) -> None:
    a, b, c = Node(store, "a"), Node(store, "b"), Node(store, "c")
    a.use = {"rated": (0, 0, 0, 1)}  # calls of `rated` lately, no instance (yet)
    b.use = {"rated": (1, 128, 0, 1), "other": (0, 0, 0, 1)}
    c.use = {"rated": (1, 128, 1, 0)}  # an instance left from earlier calls: not serving now
    for n in (a, b, c, a):
        await n.share.tick()
    assert a.share.serving("rated") == 2 and a.share.serving("other") == 2 and a.share.serving("none") == 1
    assert c.share.serving("rated") == 3  # (c asks only when a call comes: it then serves it too)
    assert a.share.others["rated"] == (2, 256, 1, 1)


async def test_a_stale_node_or_a_stopped_one_no_longer_counts(store: Store) -> None:
    a, b = Node(store, "a"), Node(store, "b")
    a.use = {"team": (1, 128, 0, 1)}
    await a.share.tick()
    b.now = a.now + a.share.stale + 1  # a published nothing since: gone (killed, cut off)
    await b.share.tick()
    assert b.share.others == {} and b.share.serving("team") == 1

    a.now = b.now
    await a.share.tick()
    await b.share.tick()
    assert b.share.others == {"team": (1, 128, 0, 1)} and b.share.serving("team") == 2
    await a.share.stop()  # a clean stop takes its rows with it at once
    await b.share.tick()
    assert b.share.others == {}


async def test_a_refused_start_asks_the_nodes_holding_idle_instances_to_let_them_go(store: Store) -> None:
    a, b = Node(store, "a"), Node(store, "b")
    a.use = {"team": (1, 128, 1, 0), "keep": (1, 128, 1, 0)}  # one idle instance of each
    await a.share.tick()
    await b.share.tick()
    b.share.want("team")  # b was refused a start of team (QuotaGuard.room calls this)
    await b.share.tick()
    await a.share.tick()
    assert a.released == ["team"]  # not `keep`: nobody asked

    a.use = {"team": (1, 128, 0, 0)}  # its instance is busy now: nothing to release, asked or not
    await a.share.tick()
    assert a.released == ["team"]
    b.now += 10  # the ask lasts a few seconds only
    a.now = b.now
    await b.share.tick()
    a.use = {"team": (1, 128, 1, 0)}
    await a.share.tick()
    assert a.released == ["team"]


async def test_many_namespaces_in_one_write(store: Store) -> None:
    a, b = Node(store, "a"), Node(store, "b")
    a.use = {f"ns{i}": (1, 128, 0, 0) for i in range(300)}
    await a.share.tick()
    await b.share.tick()
    assert len(b.share.others) == 300 and sum(v[0] for v in b.share.others.values()) == 300
