"""What the zygote does before it forks so its instances copy fewer pages (issue 24, density): the pool
filling runs in a forked child (it keeps objects alive in the process it runs in), and the shortcuts that
replace heavier code in the child give the same answers as that code."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import socket
from typing import Any

from polyfn.runtimes.python import prefork
from polyfn.runtimes.python.flavors import base
from polyfn.sandbox import rootfs, staged_root, veth

from ...sandbox.test_sandbox_layers import in_child


def _by_inspect(fn: Any) -> tuple[int, int]:
    req = mx = 0
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            mx += 1
            req += p.default is p.empty
        elif p.kind is p.VAR_POSITIONAL:
            mx = 99
    return req, mx


def test_arity_and_async_from_the_code_object_equal_inspect() -> None:
    def two(event, context): ...
    def defaults(event, context=None, *args, flag, **kw): ...
    def posonly(a, /, b, c=1): ...
    def star(*args): ...
    def kwonly(a, *, b): ...
    def none(): ...
    async def coro(event, context=None): ...

    @functools.wraps(two)
    def wrapped(*args, **kw): ...

    signed = lambda *a: None  # noqa: E731
    signed.__signature__ = inspect.signature(two)  # type: ignore[attr-defined]
    for fn in (two, defaults, posonly, star, kwonly, none, coro, wrapped, signed, lambda e, c: None,
               functools.partial(two, 1)):
        assert base.positional_arity(fn) == _by_inspect(fn), fn
        assert base.Adapter(fn, None).is_async == inspect.iscoroutinefunction(fn), fn  # type: ignore[arg-type]


def test_fill_pools_takes_the_free_blocks_of_used_pools() -> None:
    def child() -> str:
        before = prefork._free_blocks()
        prefork.fill_pools()
        after = prefork._free_blocks()
        return json.dumps([sum(before.values()), len(prefork._FILLERS), sorted(before) == sorted(after)])

    status, out = in_child(child)
    assert status == 0, out
    free_before, fillers, same_classes = json.loads(out)
    assert same_classes and free_before > 0 and fillers > 0
    status, out = in_child(lambda: prefork.before_fork() or "ok")  # empties the type cache
    assert (status, out) == (0, b"ok")


def test_staged_root_and_digest_are_remembered_and_unchanged() -> None:
    cfg = {"root": ["/usr", "/lib"], "mask": ["/usr/local"], "tmp_mb": 64}
    text = json.dumps(cfg)
    parsed, digest = staged_root(text)
    assert parsed == cfg and staged_root(text)[1] == digest
    assert digest == hashlib.sha256(json.dumps([cfg["root"], cfg["mask"]]).encode()).hexdigest()[:16]
    assert rootfs.digest(list(cfg["root"]), list(cfg["mask"])) == digest
    assert rootfs.digest(["/usr"], ["/lib"]) != rootfs.digest(["/usr", "/lib"], [])


def test_veth_addresses_as_before() -> None:
    import ipaddress

    for pid in (1, 2, 4242, 2**22, 10**7):
        base_ip = int(veth.POOL.network_address) + 2 * (pid % (veth.POOL.num_addresses // 2))
        assert veth.addresses(pid) == (str(ipaddress.IPv4Address(base_ip)), str(ipaddress.IPv4Address(base_ip + 1)))
        socket.inet_aton(veth.addresses(pid)[1])
