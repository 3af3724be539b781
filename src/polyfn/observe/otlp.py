"""Optional OpenTelemetry export: every activation becomes one OTLP span (extra `polyfn[otel]`, off by default).

Turned on by `POLYFN_OTLP_ENDPOINT` (e.g. `http://127.0.0.1:4318/v1/traces`, OTLP over HTTP/protobuf). Spans
are built after the fact from activation records, so nothing is added to the invocation path: the recorder
hands each stored batch to `submit()`, which queues it (bounded; the oldest batch is dropped when the
collector cannot keep up) and a background task exports it in a worker thread.

Span: name `invoke <function>`, kind SERVER, trace id = the activation's trace id, span id = the first 16 hex
digits of the activation id, parent = the caller's span from `traceparent` (if any), start/end = the
activation's, status ERROR unless `success`, attributes `faas.*` (OpenTelemetry FaaS conventions) and
`polyfn.*`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from polyfn.model import Activation

log = logging.getLogger("polyfn.otlp")


class OtlpExporter:
    def __init__(self, endpoint: str, service_name: str = "polyfn", max_batches: int = 100,
                 exporter: Any = None):
        from opentelemetry.sdk.resources import Resource

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, timeout=10)
        self.endpoint = endpoint
        self._exporter = exporter
        self._resource = Resource.create({"service.name": service_name})
        self._queue: deque[list[Activation]] = deque(maxlen=max_batches)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.exported = 0
        self.failed = 0

    def spans(self, acts: list[Activation]) -> list[Any]:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        out = []
        for a in acts:
            try:
                trace_id = int(a.trace_id or a.id, 16)
                span_id = int(a.id[:16], 16)
            except ValueError:
                continue
            ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            parent = (SpanContext(trace_id, int(a.parent_id, 16), is_remote=True,
                                  trace_flags=TraceFlags(TraceFlags.SAMPLED)) if a.parent_id else None)
            ok = a.status == "success"
            out.append(ReadableSpan(
                name=f"invoke {a.function}", context=ctx, parent=parent, resource=self._resource,
                kind=SpanKind.SERVER,
                attributes={
                    "faas.name": a.function, "faas.version": str(a.revision), "faas.invocation_id": a.id,
                    "faas.trigger": "http" if a.trigger == "http" else "other", "faas.coldstart": a.cold,
                    "faas.instance": a.instance, "polyfn.trigger": a.trigger, "polyfn.status": a.status,
                    "http.response.status_code": a.status_code, "polyfn.wait_ms": a.wait_ms,
                    "polyfn.init_ms": a.init_ms, "polyfn.run_ms": a.run_ms,
                },
                status=Status(StatusCode.UNSET if ok else StatusCode.ERROR, None if ok else a.status),
                start_time=int(a.start * 1e9), end_time=int((a.end or a.start) * 1e9),
            ))
        return out

    def submit(self, acts: list[Activation]) -> None:
        """Called by the recorder after a batch is stored; never blocks."""
        if acts:
            self._queue.append(list(acts))
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue.popleft()
                try:
                    result = await asyncio.to_thread(self._exporter.export, self.spans(batch))
                except Exception as e:
                    result = None
                    log.warning("OTLP export to %s failed: %s", self.endpoint, e)
                if result == SpanExportResult.SUCCESS:
                    self.exported += len(batch)
                else:
                    self.failed += len(batch)

    async def stop(self, timeout: float = 5.0) -> None:
        """Export what is queued (bounded by `timeout`), then stop."""
        if self._task is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queue and asyncio.get_running_loop().time() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._exporter.shutdown)
