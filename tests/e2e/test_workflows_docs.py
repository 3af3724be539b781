"""Every code block of docs/workflows.md, run in order against a real server through the shared runner
(tests/e2e/docblocks.py: a block with `file=PATH` is written to that path first; `bash` blocks run with
`set -euo pipefail`, `python` blocks with this interpreter; trailing `# …` comments are expected output), each must
succeed and show what the page says it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import REPO
from .docblocks import blocks, doc_env, run_page

DOC = REPO / "docs" / "workflows.md"
HOST_FS = True  # (the module's server: functions may write to the host's /tmp; these do not need it)


def test_the_page_has_blocks_of_every_kind() -> None:
    kinds = {(b.lang, b.file is not None) for b in blocks(DOC.read_text())}
    assert {("bash", False), ("python", False), ("python", True), ("json", True)} <= kinds


def test_every_block_runs(server: Any, tmp_path: Path) -> None:
    ran = 0
    for block, r in run_page(DOC, tmp_path, doc_env(server.url, key=server.key), timeout=600):
        body = block.code
        ran += 1
        if "--wait" in body:
            assert '"payment"' in r.stdout and '"charged": 8' in r.stdout
        if "ExecutionAlreadyExists" in body:
            assert "refused: Execution Already Exists" in r.stdout
        if "send_durable_execution_callback_success" in body:
            assert "SUCCEEDED" in r.stdout and "approved" in r.stdout
        if "blocking=true" in body:
            assert '{"charged":12}' in r.stdout.replace(" ", "")
    assert ran >= 7
