"""A harness that runs a flavor adapter exactly as the instance does (`instance._run_one`), in-process:
write the user's module, import it, build the adapter, send `Invoke` frames, read `Result`s."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyfn.events.cloudevent import new_event
from polyfn.protocol import Invoke, Result
from polyfn.runtimes.python import instance
from polyfn.runtimes.python.capture import LogBuffer
from polyfn.runtimes.python.flavors import FunctionMeta, load_adapter
from polyfn.runtimes.python.startup import InstanceSpec


class Fn:
    def __init__(self, adapter: Any, module: Any):
        self.adapter = adapter
        self.module = module

    def invoke(self, kind: str, body: bytes = b"", method: str = "", path: str = "", query: str = "",
               headers: list[tuple[str, str]] | None = None, content_type: str = "", timeout: float = 30,
               identity: dict[str, Any] | None = None) -> Result:
        self.last_request_id = uuid.uuid4().hex
        inv = Invoke(1, self.last_request_id, kind, time.time() + timeout, method, path, query, headers or [], body,
                     content_type, "trace-1", identity)
        buf = LogBuffer(16384, 1000)
        if self.adapter.is_async:
            spec = InstanceSpec(instance_id="i", function="f", revision=1, flavor="x", handler="h.h",
                                         code_dir=".")
            return asyncio.run(instance._run_one_async(self.adapter, inv, spec, None))
        return instance._run_one(self.adapter, inv, buf)

    def http(self, method: str = "GET", path: str = "/", body: bytes = b"", query: str = "",
             headers: dict[str, str] | list[tuple[str, str]] | None = None,
             identity: dict[str, Any] | None = None) -> Result:
        hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        hs = [(k.lower(), v) for k, v in hs]
        hs.insert(0, ("host", "fn.example"))
        ct = next((v for k, v in hs if k == "content-type"), "")
        return self.invoke("http", body, method, path, query, hs, ct, identity=identity)

    def event(self, payload: Any, content_type: str = "application/json",
              identity: dict[str, Any] | None = None) -> Result:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.invoke("event", body, "POST", "/", content_type=content_type, identity=identity)

    def cloudevent(self, type_: str, data: Any) -> Result:
        ce = new_event(type_, "polyfn:test", data)
        return self.invoke("cloudevent", ce.to_json(), content_type="application/cloudevents+json")


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """load(flavor, source, handler="handler.handler", env={}, files={}) -> Fn"""
    saved_env = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded: list[str] = []

    def _load(flavor: str, source: str | None, handler: str = "handler.handler", env: dict[str, str] | None = None,
              files: dict[str, str] | None = None, memory: int = 128, timeout: float = 30) -> Fn:
        module_name, _, func_name = handler.rpartition(".")
        from functions_framework import _function_registry  # per process in real instances: fresh per test

        _function_registry.REGISTRY_MAP.clear()
        unique = f"m{uuid.uuid4().hex[:8]}"
        path = tmp_path / unique / (module_name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:  # None: the module is among `files` (a package's __init__.py)
            path.write_text(textwrap.dedent(source))
        for name, text in (files or {}).items():
            p = tmp_path / unique / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(text))
        sys.path.insert(0, str(tmp_path / unique))
        os.chdir(tmp_path / unique)
        try:
            for m in list(sys.modules):
                if m == module_name or m.startswith(module_name + "."):
                    del sys.modules[m]
            module = importlib.import_module(module_name)
            loaded.append(module_name)
        finally:
            sys.path.remove(str(tmp_path / unique))
        meta = FunctionMeta("fn-test", 3, handler, memory, timeout, env or {})
        return Fn(load_adapter(flavor, getattr(module, func_name), meta), module)

    yield _load
    for m in loaded:
        sys.modules.pop(m, None)
    os.environ.clear()
    os.environ.update(saved_env)


def body_json(r: Result) -> Any:
    return json.loads(r.body)


def header(r: Result, name: str) -> str | None:
    for k, v in r.headers:
        if k.lower() == name.lower():
            return v
    return None
