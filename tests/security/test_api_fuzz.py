"""API fuzzing: schemathesis generates requests from `/v1/openapi.json`; none may answer 5xx or hang.

The number of examples per operation is bounded (`POLYFN_FUZZ_EXAMPLES`, default 5) so CI stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import needs

schemathesis = needs.module("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from ..e2e.conftest import Server, start_server  # noqa: E402

EXAMPLES = int(os.environ.get("POLYFN_FUZZ_EXAMPLES", "5"))


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(Path(tmp_path_factory.mktemp("polyfn-fuzz")))
    s.deploy("fuzzed", {"handler.py": "def handler(event, context):\n    return event\n"})
    yield s
    s.stop()


@pytest.mark.timeout(300)  # ~40 operations × EXAMPLES; over 120 s on a saturated machine (load 30 on 2 cores)
def test_no_server_errors_no_hangs(fuzz_node: Server) -> None:
    from hypothesis import given

    auth = {"authorization": f"Bearer {fuzz_node.key}"}
    schema = schemathesis.openapi.from_url(f"{fuzz_node.url}/v1/openapi.json", headers=auth)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() == "DELETE" and op.path.startswith("/v1/keys"):
            continue  # revoking keys at random would lock the fuzzer out
        operations += 1

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=fuzz_node.url, headers=auth, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

        run()
        assert fuzz_node.proc.poll() is None, f"the server died fuzzing {op.method} {op.path}"
    assert operations >= 8
    assert not failures, "\n".join(failures[:20])
    assert fuzz_node.http.get("/healthz").status_code == 200
