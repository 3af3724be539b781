"""The hook to Node.js / HTTP detection (`polyfn.deploy.detect_node`), with a stand-in module."""

from __future__ import annotations

import sys
import types

import pytest

from polyfn.deploy import detect
from polyfn.deploy.errors import DeployError


@pytest.fixture
def node_hook(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    calls: list[tuple[object, ...]] = []

    def infer_runtime(files: dict[str, bytes], flavor: str | None) -> str | None:
        return "node" if "index.js" in files and not any(n.endswith(".py") for n in files) else None

    def has_node_or_http_code(files: dict[str, bytes]) -> bool:
        return "index.js" in files

    def detect_(files: dict[str, bytes], runtime: str | None, flavor: str | None,
                handler: str | None) -> tuple[str, str, str]:
        calls.append((runtime, flavor, handler))
        return "node", flavor or "aws", handler or "index.handler"

    mod = types.ModuleType("polyfn.deploy.detect_node")
    mod.infer_runtime = infer_runtime  # type: ignore[attr-defined]
    mod.has_node_or_http_code = has_node_or_http_code  # type: ignore[attr-defined]
    mod.detect = detect_  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "polyfn.deploy.detect_node", mod)
    import polyfn.deploy as pkg

    monkeypatch.setattr(pkg, "detect_node", mod, raising=False)
    return types.SimpleNamespace(calls=calls)


def test_node_code_goes_to_the_hook(node_hook: types.SimpleNamespace) -> None:
    d = detect.detect({"index.js": b"exports.handler = async () => 1"}, None, None)
    assert (d.runtime, d.flavor, d.handler) == ("node", "aws", "index.handler") and "Node.js" in d.reason


def test_python_code_stays_python(node_hook: types.SimpleNamespace) -> None:
    d = detect.detect({"lambda_function.py": b"def lambda_handler(e, c):\n    return 1\n"}, None, None)
    assert (d.runtime, d.flavor) == ("python", "aws") and node_hook.calls == []


def test_mixed_upload_falls_back_to_the_hook(node_hook: types.SimpleNamespace) -> None:
    d = detect.detect({"util.py": b"X = 1\n", "index.js": b"exports.handler = 1"}, None, None)
    assert d.runtime == "node" and node_hook.calls == [(None, None, None)]


def test_explicit_python_never_asks_the_hook(node_hook: types.SimpleNamespace) -> None:
    with pytest.raises(DeployError):
        detect.detect({"util.py": b"X = 1\n", "index.js": b""}, None, None, runtime="python")


def test_without_the_hook_other_runtimes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "_node_hook", lambda: None)
    with pytest.raises(DeployError) as e:
        detect.detect({"index.js": b""}, None, None, runtime="node")
    assert e.value.code == "invalid_spec"
