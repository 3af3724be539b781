"""A C# Azure Functions project as a deploy plan: one function per [FunctionName], triggers from attributes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from polyfn import manifests
from polyfn.runtimes import dotnet

PROJECT = Path(__file__).resolve().parents[1] / "e2e" / "dotnet" / "project"


def test_project_plan() -> None:
    plan = manifests.load(PROJECT / "host.json")
    got = {f.name: (f.spec["handler"], f.spec["runtime"], [(t.kind, t.config) for t in f.triggers])
           for f in plan.functions}
    assert got == {
        "hello": ("Hello", "dotnet", [("http", {"auth_level": "Anonymous"})]),
        "tick": ("Tick", "dotnet", [("cron", {"cron": "*/5 * * * *"})]),
        "onblob": ("OnBlob", "dotnet", [("storage", {"bucket": "photos", "filter": "{name}", "events": ["created"]})]),
        "onqueue": ("OnQueue", "dotnet", [("queue", {"queue": "orders"})]),
    }


def test_bad_schedule_is_named(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text("{}")
    (tmp_path / "F.cs").write_text('class F { [FunctionName("T")] public static void R([TimerTrigger("nope")] '
                                   'TimerInfo t) {} }')
    with pytest.raises(manifests.ManifestError, match=r'F.cs: \[FunctionName\("T"\)\]: \[TimerTrigger\]'):
        manifests.load(tmp_path / "host.json")


def test_no_functions_at_all(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text("{}")
    with pytest.raises(manifests.ManifestError, match="nor C# "):
        manifests.load(tmp_path / "host.json")


def test_trigger_body_carries_each_shape() -> None:
    ce = {"specversion": "1.0", "id": "1", "type": "io.polyfn.storage.object.created", "source": "s", "time":
          "2026-01-01T00:00:00Z", "data": {"bucket": "photos", "key": "a.txt", "size": 5,
                                           "content_base64": base64.b64encode(b"hello").decode()}}
    out = json.loads(dotnet.trigger_body(json.dumps(ce).encode()))
    assert out["blob"]["key"] == "a.txt" and base64.b64decode(out["blob"]["content_base64"]) == b"hello"
    assert out["blob"]["name"] == "photos/a.txt" and out["timer"]["IsPastDue"] is False
    assert set(json.loads(dotnet.trigger_body(b"not json"))) == {"timer", "blob", "messages"}  # never fails the call
