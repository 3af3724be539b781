"""Event-side control API: async invocations, the dead-letter queue, topics, log streams and CloudEvents
ingress (triggers: api/triggers.py). Routed under `/v1` (with the API key) by the control API's table (api/app.py)."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from polyfn import jsontext
from polyfn.api.errors import ApiError
from polyfn.api.namespaces import request_namespace
from polyfn.call import Call
from polyfn.headers import from_outside
from polyfn.queue import tenancy as queue_ns
from polyfn.tenancy import HEADER, key_namespace, local

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import AsyncJobs, Triggers


async def accept_async(queue: AsyncJobs, request: Request, name: str, kind: str, body: bytes, content_type: str,
                       method: str = "POST", path: str = "/", query: str = "") -> Response:
    """Queue an invocation durably and answer 202 with its activation id."""
    headers = from_outside([(k, v) for k, v in request.headers.items()
                            if k not in ("authorization", "cookie", "x-callback-url", "content-length")])
    # a refusal (queue/dispatcher.py `Rejected`) is the platform's typed error: the API's handler answers it
    aid = await queue.enqueue(Call(name, kind, "async", method, path, query, headers, body, content_type),
                              request.headers.get("x-callback-url"))
    return JSONResponse({"activation_id": aid, "status": "pending"}, status_code=202,
                        headers={"x-polyfn-activation-id": aid, "location": f"/v1/activations/{aid}"})


def merge_activation(act: dict[str, Any] | None, queued: dict[str, Any] | None) -> dict[str, Any]:
    """The activation as a user sees it: the latest attempt's record, overlaid with the queue's state
    (`pending` while waiting or between retries, `running`, `dead_letter`) and the callback's delivery."""
    if not queued:
        assert act is not None
        return act
    job = queued.get("job")
    out = act or {}
    if job is not None:
        if not out:
            out = {"id": job.id, "function": job.function, "revision": 0, "trigger": job.trigger,
                   "start": job.enqueued_at, "end": 0.0, "duration_ms": 0.0, "wait_ms": 0.0, "init_ms": 0.0,
                   "run_ms": 0.0, "cold": False, "status_code": 0, "result": "", "error": None, "logs": [],
                   "instance": ""}
        else:
            out["last_status"] = out.get("status")
        out["status"] = "dead_letter" if job.state == "dead" else job.state
        out["attempts"] = job.attempt
        out["enqueued_at"] = job.enqueued_at
        if job.state == "pending" and job.attempt:
            out["next_attempt_at"] = job.not_before
        if job.last_error:
            out["last_error"] = job.last_error
        if job.reason:
            out["dead_letter_reason"] = job.reason
    if queued.get("callback"):
        out["callback"] = queued["callback"]
    return out


def whole_node(request: Request) -> bool:
    """The node's admin key naming no namespace: the whole node's queue (else the request's namespace's)."""
    key = getattr(request.state, "key", None)
    return key is not None and key_namespace(key) is None and "namespace" not in request.query_params \
        and HEADER not in request.headers


class QueueRoutes:
    """The async queue's depth and its dead letters (queue/dispatcher.py, queue/builtin.py)."""

    def __init__(self, *, queue: AsyncJobs):
        self.queue = queue

    async def queue_stats(self, request: Request) -> dict[str, Any]:
        if not whole_node(request):
            return await queue_ns.depth(self.queue, request_namespace(request))
        counts = await self.queue.counts()
        return {"pending": counts.get("pending", 0), "running": counts.get("running", 0),
                "dead_letters": counts.get("dead", 0), "inflight": self.queue.inflight,
                "commits": self.queue.db.commits, "writes": self.queue.db.writes}

    async def dlq_list(self, request: Request, function: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        jobs = await queue_ns.dead(self.queue.db, request_namespace(request), function, limit)
        return {"dead_letters": [_dead_json(j, full=False) for j in jobs]}

    async def _dead_letter(self, request: Request, entry_id: str) -> Any:
        job = await queue_ns.dead_letter(self.queue.db, request_namespace(request), entry_id)
        if job is None:  # (another namespace's: as an unknown one)
            raise ApiError(404, "dead_letter_not_found", f"no dead letter {entry_id!r}")
        return job

    async def dlq_show(self, entry_id: str, request: Request) -> dict[str, Any]:
        return _dead_json(await self._dead_letter(request, entry_id), full=True)

    async def dlq_replay(self, entry_id: str, request: Request) -> Response:
        await self._dead_letter(request, entry_id)
        if not await self.queue.db.replay(entry_id, time.time()):
            raise ApiError(404, "dead_letter_not_found", f"no dead letter {entry_id!r}")
        self.queue.poke()
        return JSONResponse({"activation_id": entry_id, "status": "pending"}, status_code=202)

    async def dlq_delete(self, entry_id: str, request: Request) -> dict[str, Any]:
        await self._dead_letter(request, entry_id)
        if not await self.queue.db.purge(entry_id):
            raise ApiError(404, "dead_letter_not_found", f"no dead letter {entry_id!r}")
        return {"deleted": entry_id}


class IngressRoutes:
    """Messages in from outside for the triggers: embedded topics, log streams, CloudEvents."""

    def __init__(self, *, settings: Settings, triggers: Triggers):
        self.settings = settings
        self.triggers = triggers

    async def publish(self, topic: str, request: Request) -> JSONResponse:
        from polyfn.triggers import topic as topics
        from polyfn.triggers.base import TriggerConfigError

        body = await request.body()
        if len(body) > self.settings.max_payload:
            raise ApiError(413, "payload_too_large",
                           f"the message is {len(body)} bytes; the limit is {self.settings.max_payload}")
        attrs = {k[5:]: v for k, v in request.query_params.items() if k.startswith("attr.")}
        ct = request.headers.get("content-type")
        if ct:
            attrs.setdefault("content_type", ct)
        msg_id = uuid.uuid4().hex
        try:
            n = await topics.publish(self.triggers, topic, msg_id, body, attrs, request_namespace(request))
        except TriggerConfigError as e:
            raise ApiError(400, e.code, str(e)) from None
        return JSONResponse({"id": msg_id, "topic": topic, "subscribers": n}, status_code=201)

    async def ingest_logs(self, stream: str, request: Request) -> JSONResponse:
        from polyfn.triggers import log as logs
        from polyfn.triggers.base import TriggerConfigError

        body = await request.body()
        if len(body) > self.settings.max_payload:
            raise ApiError(413, "payload_too_large",
                           f"the batch is {len(body)} bytes; the limit is {self.settings.max_payload}")
        lines = parse_log_lines(body, request.headers.get("content-type", ""))
        try:
            n = await logs.ingest(self.triggers, stream, lines, request_namespace(request))
        except TriggerConfigError as e:
            raise ApiError(400, e.code, str(e)) from None
        return JSONResponse({"stream": stream, "accepted": len(lines), "subscribers": n}, status_code=202)

    async def ingest_events(self, request: Request) -> JSONResponse:
        from polyfn.triggers import events as ce

        body = await request.body()
        if len(body) > self.settings.max_payload:
            raise ApiError(413, "payload_too_large",
                           f"the event is {len(body)} bytes; the limit is {self.settings.max_payload}")
        try:
            evts = ce.from_http(dict(request.headers.items()), body)
        except ce.InvalidEvent as e:
            raise ApiError(400, "invalid_cloudevent", str(e)) from None
        ns = request_namespace(request)
        out = [{"id": e["id"], "deliveries": [{**d, "trigger": local(d["trigger"]), "function": local(d["function"])}
                                              for d in await ce.route(self.triggers, e, namespace=ns)]} for e in evts]
        return JSONResponse({"events": out}, status_code=202)


def _dead_json(job: Any, full: bool) -> dict[str, Any]:
    out = job.summary()
    out["function"] = local(job.function)  # (a namespace's dead letters name its functions by local names)
    if not full:
        out.pop("body", None)
        out.pop("headers", None)
    return out


def parse_log_lines(body: bytes, content_type: str) -> list[tuple[str, float]]:
    """`(message, epoch seconds or 0)` pairs from a JSON array (strings, or objects with `message`/`msg` and an
    optional `timestamp` in s or ms), a JSON object with `lines`, or plain text (one line each)."""
    if "json" in content_type:
        try:
            data = jsontext.loads_text(body or b"[]")
        except ValueError as e:
            raise ApiError(400, "invalid_json", f"the log batch is not valid JSON ({e})") from None
        if isinstance(data, dict):
            data = data.get("lines", [data])
        if not isinstance(data, list):
            raise ApiError(400, "invalid_request", "send a JSON array of log lines")
        out = []
        for item in data:
            if isinstance(item, dict):
                msg = item.get("message", item.get("msg"))
                text = msg if isinstance(msg, str) else json.dumps(item)
                ts = item.get("timestamp", 0)
                ts = float(ts) / 1000 if isinstance(ts, int | float) and ts > 1e11 else (
                    float(ts) if isinstance(ts, int | float) else 0.0)
                out.append((text, ts))
            else:
                out.append((item if isinstance(item, str) else json.dumps(item), 0.0))
        return out
    return [(line, 0.0) for line in body.decode("utf-8", "replace").splitlines() if line.strip()]


def to_json(obj: Any) -> Any:
    return msgspec.to_builtins(obj)
