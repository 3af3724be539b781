"""OTLP export: with POLYFN_OTLP_ENDPOINT set, activations arrive at a collector as spans of their trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .. import needs
from .conftest import start_server, wait_until

pb = needs.module("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                  reason="the otel extra is not installed (pip install -e '.[test]')")


@pytest.fixture
def collector() -> Iterator[tuple[str, list[Any]]]:
    """A minimal OTLP/HTTP trace receiver: it keeps every decoded ExportTraceServiceRequest."""
    got: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            req = pb.ExportTraceServiceRequest()
            req.ParseFromString(body)
            got.append(req)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1/traces", got
    srv.shutdown()


def test_activations_are_exported_as_spans(tmp_path: Path, collector: tuple[str, list[Any]]) -> None:
    url, got = collector
    s = start_server(tmp_path / "data", env={"POLYFN_OTLP_ENDPOINT": url})
    try:
        s.deploy("traced", {"handler.py": "def handler(e, c):\n    if e.get('fail'):\n        raise ValueError(1)\n    return 1\n"})
        trace_id = "4bf92f3577b34a0ea0f902b7b0d5c8e1"
        r = s.api.post("/v1/functions/traced/invoke", json={},
                       headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        aid = r.headers["x-polyfn-activation-id"]
        s.api.post("/v1/functions/traced/invoke", json={"fail": True})

        def spans() -> list[Any]:
            return [sp for req in got for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]

        assert wait_until(lambda: len(spans()) >= 2, 15)
        ok = next(sp for sp in spans() if sp.trace_id.hex() == trace_id)
        assert ok.name == "invoke traced"
        assert ok.span_id.hex() == aid[:16] and ok.parent_span_id.hex() == "00f067aa0ba902b7"
        attrs = {a.key: a.value for a in ok.attributes}
        assert attrs["faas.invocation_id"].string_value == aid
        assert attrs["faas.coldstart"].bool_value is True
        assert ok.end_time_unix_nano > ok.start_time_unix_nano
        failed = next(sp for sp in spans() if sp.trace_id.hex() != trace_id)
        assert failed.status.code == 2  # STATUS_CODE_ERROR
        resource = {a.key: a.value.string_value for a in got[0].resource_spans[0].resource.attributes}
        assert resource["service.name"] == "polyfn"
    finally:
        s.stop()
