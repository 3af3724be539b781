"""The invoker's one admission of a call (`Invoker.admit`): who is refused, with which status and code, and
that a call the ingress already looked up is not looked up again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyfn.auth.ratelimit import Limiter
from polyfn.call import Call
from polyfn.config import Settings
from polyfn.instances.manager import InstanceManager
from polyfn.invoker import Invoker, Outcome
from polyfn.model import FunctionSpec, Revision
from polyfn.scheduler.registry import Active, FunctionRegistry


class Registry:
    """The registry's lookups (scheduler/registry.py), counted."""

    def __init__(self, *specs: FunctionSpec) -> None:
        self.functions = {s.name: Active(_rev(s, 2), pool=None) for s in specs}  # type: ignore[arg-type]
        self.pinned_pools: dict[tuple[str, int], Active] = {}
        self.lookups = 0

    def get(self, name: str) -> Active | None:
        self.lookups += 1
        return self.functions.get(name)

    def pinned(self, revision: Revision) -> Active:
        return Active(revision, pool=None)  # type: ignore[arg-type]


def _rev(spec: FunctionSpec, number: int) -> Revision:
    return Revision(function=spec.name, number=number, spec=spec, code_sha256="", code_dir="/nowhere")


def _invoker(tmp_path: Path, registry: Registry) -> Invoker:
    inv = Invoker(Settings(data_dir=tmp_path, max_payload=1024), registry, recorder=None,  # type: ignore[arg-type]
                  limiter=Limiter())
    return inv


PLAIN = FunctionSpec(name="plain")
APP_ONLY = FunctionSpec(name="members", auth="app")
LIMITED = FunctionSpec(name="limited", rate_limit=1)


@pytest.mark.parametrize(("call", "status", "code"), [
    (Call("missing"), 404, "function_not_found"),
    (Call("plain", body=b"x" * 1025), 413, "payload_too_large"),
    (Call("members", "http", "http"), 401, "app_token_required"),
    (Call("members", "event", "invoke"), 0, ""),  # the invoke API is the owner's, not an end user's
    (Call("members", "http", "http", identity={"uid": "u1"}), 0, ""),
    (Call("plain", body=b"x" * 1024), 0, ""),
])
async def test_admission(tmp_path: Path, call: Call, status: int, code: str) -> None:
    out = await _invoker(tmp_path, Registry(PLAIN, APP_ONLY, LIMITED)).admit(call)
    if not status:
        assert isinstance(out, Active) and out.revision.function == call.function
        return
    assert isinstance(out, Outcome) and out.status == status
    assert out.error is not None and out.error["code"] == code  # typed: no body to parse back
    assert (b"x-polyfn-error", code.encode()) in out.headers


async def test_a_node_that_stops_refuses_before_anything_else(tmp_path: Path) -> None:
    inv = _invoker(tmp_path, Registry(PLAIN))
    inv.accepting = False
    out = await inv.admit(Call("missing", body=b"x" * 2000))
    assert isinstance(out, Outcome) and out.status == 503 and out.error == {
        "code": "shutting_down", "message": "the server is shutting down"}


async def test_the_rate_limit_refuses_the_second_call_of_the_second(tmp_path: Path) -> None:
    inv = _invoker(tmp_path, Registry(LIMITED))
    assert isinstance(await inv.admit(Call("limited")), Active)
    out = await inv.admit(Call("limited"))
    assert isinstance(out, Outcome) and out.status == 429 and out.error and out.error["code"] == "rate_limited"
    assert (b"retry-after", b"1") in out.headers


async def test_a_call_looked_up_at_its_ingress_is_not_looked_up_again(tmp_path: Path) -> None:
    registry = Registry(PLAIN)
    active = registry.get("plain")
    inv = _invoker(tmp_path, registry)
    assert await inv.admit(Call("plain", active=active)) is active
    assert registry.lookups == 1


async def test_a_pinned_revision_is_served_by_its_own_pool(tmp_path: Path) -> None:
    pinned: Any = _rev(PLAIN, 1)
    out = await _invoker(tmp_path, Registry(PLAIN)).admit(Call("plain", revision=pinned))
    assert isinstance(out, Active) and out.revision.number == 1


# -- the real registry and pools (scheduler/registry.py and its `new_pool`: no process starts) ---------


class Localiser:
    """A cluster's `Deployer.localise`: the revision with this node's paths, or the reason it cannot be."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, revision: Revision) -> Revision:
        self.asked.append((revision.function, revision.number))
        if self.fail:
            raise OSError(self.fail)
        return Revision(function=revision.function, number=revision.number, spec=revision.spec,
                        code_sha256=revision.code_sha256, code_dir="/here")


def _node(tmp_path: Path, localise: Localiser | None = None) -> tuple[Invoker, FunctionRegistry]:
    settings = Settings(data_dir=tmp_path, max_payload=1024)
    registry = FunctionRegistry(InstanceManager(settings), drain_timeout=1.0)
    registry.activate(_rev(PLAIN, 2))
    return Invoker(settings, registry, recorder=None, limiter=Limiter(), localise=localise), registry


async def test_the_current_revision_is_admitted_with_its_pool(tmp_path: Path) -> None:
    inv, registry = _node(tmp_path)
    out = await inv.admit(Call("plain"))
    assert out is registry.get("plain") and isinstance(out, Active) and out.revision.number == 2
    missing = await inv.admit(Call("other"))
    assert isinstance(missing, Outcome) and missing.status == 404


async def test_a_revision_another_node_deployed_is_localised_once_then_served_by_its_own_pool(tmp_path: Path) -> None:
    localise = Localiser()
    inv, registry = _node(tmp_path, localise)
    call = Call("plain", revision=_rev(PLAIN, 1))
    assert inv._admitted(call) is None  # the hot path hands it to `admit`, which awaits the localising
    out = await inv.admit(call)
    assert isinstance(out, Active) and out.revision.number == 1 and out.revision.code_dir == "/here"
    assert call.revision is out.revision and localise.asked == [("plain", 1)]
    assert registry.pinned_pools[("plain", 1)] is out and out.pool is not registry.get("plain").pool  # type: ignore[union-attr]
    again = await inv.admit(Call("plain", revision=_rev(PLAIN, 1)))
    assert again is out and localise.asked == [("plain", 1)]  # its pool exists: not localised again


async def test_pinning_the_current_revision_needs_no_localising(tmp_path: Path) -> None:
    localise = Localiser()
    inv, registry = _node(tmp_path, localise)
    assert await inv.admit(Call("plain", revision=_rev(PLAIN, 2))) is registry.get("plain")
    assert localise.asked == []


async def test_a_revision_that_cannot_be_localised_is_refused_503_with_a_retry(tmp_path: Path) -> None:
    inv, registry = _node(tmp_path, Localiser(fail="no such blob"))
    out = await inv.admit(Call("plain", revision=_rev(PLAIN, 1)))
    assert isinstance(out, Outcome) and out.status == 503 and out.error is not None
    assert out.error["code"] == "code_unavailable" and "no such blob" in out.error["message"]
    assert (b"retry-after", b"5") in out.headers and registry.pinned_pools == {}
