"""`polyfn run`: deploy a function into a throw-away node and invoke it once, without a server.

The node is the real one (`server.Node`) on a temporary data dir: the same deploy checks, the same zygote,
sandbox and flavor adapters as `polyfn serve`, only no HTTP listener. What to run is found from PATH: a
`polyfn.json` beside the code, a definition file (`template.yaml`, `stack.yml`, `serverless.yml`, `s.yaml`,
`host.json`), a single source file, or a directory whose handler polyfn detects.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from polyfn.call import Call
from polyfn.events import (
    TYPE_LOG_BATCH,
    TYPE_OBJECT_CREATED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
    new_event,
)
from polyfn.events.cloudevent import CONTENT_TYPE
from polyfn.manifests import CANDIDATES, ManifestError, load

SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", "node_modules", ".aws-sam", ".serverless"})


class RunError(Exception):
    pass


@dataclass
class Invocation:
    kind: str = "event"  # event | http | cloudevent
    body: bytes = b"{}"
    content_type: str = "application/json"
    method: str = "POST"
    path: str = "/"
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RunResult:
    status: int
    headers: dict[str, str]
    body: bytes
    activation: dict[str, Any]
    name: str


def sample_events() -> dict[str, Any]:
    """`--event KIND`: a CloudEvent per trigger type (the function's flavor shapes it), or plain HTTP."""
    now = _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z")
    return {
        "storage": (TYPE_OBJECT_CREATED, "polyfn:storage/uploads", {
            "bucket": "uploads", "key": "images/Happy Face.jpg", "size": 1024, "etag": "d41d8cd98f00b204e9800998ecf8427e",
            "content_type": "image/jpeg", "region": "local", "source_ip": "127.0.0.1", "sequencer": "0A1B2C3D4E5F678901"}),
        "queue": (TYPE_QUEUE_BATCH, "polyfn:queue/jobs", {
            "source": "queue", "topic": "jobs", "messages": [{"id": "1", "body": "{\"job\": 1}", "body_base64": False,
                                                              "attributes": {}, "sent_at": 0, "attempt": 1}]}),
        "timer": (TYPE_TIMER, "polyfn:cron/every-minute", {
            "trigger": "every-minute", "schedule": "* * * * *", "timezone": "UTC", "scheduled_time": now, "payload": {}}),
        "log": (TYPE_LOG_BATCH, "polyfn:log/app", {
            "stream": "app", "group": "polyfn", "lines": [{"id": "1", "timestamp": 0, "message": "hello"}]}),
    }


EVENT_KINDS = ("http", "storage", "queue", "timer", "log", "empty")


def invocation(event: str | None, data: str | None, method: str, path: str) -> Invocation:
    """What to send: `--event FILE|KIND` and `--data` (the payload, or the HTTP body)."""
    body = (data or "").encode()
    if event is None or event == "empty":
        if data is not None:
            _check_json(body, "--data")
        return Invocation(body=body or b"{}")
    if event == "http":
        p, _, q = path.partition("?")
        return Invocation("http", body, "application/json" if body[:1] in (b"{", b"[") else "text/plain",
                          method.upper(), p or "/", q, [("host", "localhost"), ("user-agent", "polyfn-run")])
    samples = sample_events()
    if event in samples:
        type_, source, payload = samples[event]
        if data is not None and event == "timer":
            payload["payload"] = json.loads(_check_json(body, "--data"))
        ce = msgspec.to_builtins(new_event(type_, source, payload))
        ce.setdefault("specversion", "1.0")  # required in structured mode; to_json() omits it as a default
        ce.setdefault("datacontenttype", "application/json")
        return Invocation("cloudevent", json.dumps(ce).encode(), CONTENT_TYPE)
    p = Path(event)
    if p.is_file():
        raw = p.read_bytes()
        _check_json(raw, str(p))
        return Invocation(body=raw)
    raise RunError(f"--event {event!r} is neither a file nor one of: {', '.join(EVENT_KINDS)}")


def _check_json(raw: bytes, what: str) -> bytes:
    try:
        json.loads(raw)
    except ValueError as e:
        raise RunError(f"{what} is not valid JSON: {e}") from None
    return raw


def read_tree(root: Path) -> dict[str, bytes]:
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not (set(rel.parts[:-1]) & SKIP_DIRS) and not p.name.endswith(".pyc"):
            files[rel.as_posix()] = p.read_bytes()
    return files


def find_function(path: Path, only: str | None, params: dict[str, str]) -> tuple[dict[str, Any], dict[str, bytes], list[str]]:
    """(spec fields, files, notes) for PATH."""
    path = path.expanduser().resolve()
    if path.is_file() and path.suffix in (".py", ".js", ".mjs", ".cjs"):
        return {"name": _name(path.stem)}, {path.name: path.read_bytes()}, []
    definition = path if path.is_file() else next((path / c for c in CANDIDATES if (path / c).is_file()), None)
    if path.is_dir() and (path / "polyfn.json").is_file():
        fields = json.loads((path / "polyfn.json").read_text())
        files = read_tree(path)
        files.pop("polyfn.json", None)
        fields.setdefault("name", _name(path.name))
        return fields, files, []
    if definition is not None:
        try:
            plan = load(definition, params)
        except ManifestError as e:
            raise RunError(str(e)) from None
        fns = [f for f in plan.functions if only in (None, f.name)]
        if not fns:
            raise RunError(f"{only!r} is not in {definition} (it declares {', '.join(f.name for f in plan.functions)})")
        if len(fns) > 1:
            raise RunError(f"{definition} declares {len(fns)} functions: choose one with --function "
                           f"({', '.join(f.name for f in fns)})")
        fn = fns[0]
        if fn.error:
            raise RunError(fn.error)
        files = fn.files if fn.files is not None else read_tree(fn.code_dir)  # type: ignore[arg-type]
        return dict(fn.spec), files, fn.notes
    if path.is_dir():
        return {"name": _name(path.name)}, read_tree(path), []
    raise RunError(f"{path}: not a source file, a definition file or a directory")


def _name(stem: str) -> str:
    n = stem.lower().replace("_", "-").replace(".", "-")
    return n if n[:1].isalpha() else "fn-" + n


async def run_once(fields: dict[str, Any], files: dict[str, bytes], inv: Invocation,
                   progress: Any = lambda _m: None) -> RunResult:
    from polyfn.config import Settings
    from polyfn.node import Node

    with tempfile.TemporaryDirectory(prefix="polyfn-run-") as tmp:
        node = Node(Settings(data_dir=Path(tmp) / "data", port=0))
        await node.start()
        try:
            info, _created, _ = await node.deployer.deploy(fields, files, progress)
            out = await node.invoker.call(Call(info.name, inv.kind, "run", inv.method, inv.path, inv.query,
                                               inv.headers, inv.body, inv.content_type))
            await node.recorder.flush()
            act = await node.store.get_activation(out.activation_id) if out.activation_id else None
            return RunResult(out.status, {k.decode(): v.decode() for k, v in out.headers}, out.body,
                             msgspec.to_builtins(act) if act else {}, info.name)
        finally:
            await node.stop()


def run(fields: dict[str, Any], files: dict[str, bytes], inv: Invocation, progress: Any = lambda _m: None) -> RunResult:
    try:
        import uvloop

        return uvloop.run(run_once(fields, files, inv, progress))
    except ImportError:  # pragma: no cover
        return asyncio.run(run_once(fields, files, inv, progress))
