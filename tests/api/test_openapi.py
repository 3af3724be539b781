"""The OpenAPI document says what the API answers: the error statuses with polyfn's error schema on every
`/v1` operation, and no 422 (validation errors are 400 `invalid_request`)."""

from __future__ import annotations

from pathlib import Path

from polyfn.config import Settings
from polyfn.server import Node


def test_every_v1_operation_lists_the_error_statuses_with_the_error_schema(tmp_path: Path) -> None:
    spec = Node(Settings(data_dir=tmp_path)).api.openapi()
    ops = [(path, method, op) for path, item in spec["paths"].items() if path.startswith("/v1/")
           for method, op in item.items()]
    assert len(ops) > 20
    for path, method, op in ops:
        responses = op["responses"]
        assert "422" not in responses, (method, path)
        for status in ("400", "404", "405", "409", "413", "429"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    error = spec["components"]["schemas"]["Error"]
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert error["required"] == ["error"] and set(detail["required"]) == {"code", "message"}
