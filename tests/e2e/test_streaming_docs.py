"""Every code block of docs/streaming.md, run in order against a real server through the shared runner
(tests/e2e/docblocks.py: a block with `file=PATH` is written to that path first; `bash` blocks run with
`set -euo pipefail`, `python` blocks with this interpreter; trailing `# …` comments are expected output), each must succeed
and show what the page says it shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO
from .docblocks import blocks, doc_env, run_page

DOC = REPO / "docs" / "streaming.md"
pytestmark = pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                                reason="Node.js is not installed")


def test_every_block_runs(server: Any, tmp_path: Path) -> None:
    expected_sse = next(b.code for b in blocks(DOC.read_text()) if b.lang == "text")
    ran = 0
    for block, r in run_page(DOC, tmp_path, doc_env(server.url, key=server.key)):
        body = block.code
        ran += 1
        if "curl -sN \"$POLYFN_URL/fn/ticker" in body:
            assert r.stdout.endswith(expected_sse + "\n"), r.stdout  # (the block drops the last blank line)
        if "invoke ticker --stream" in body:
            assert r.stdout == 'id: 0\ndata: {"tick":0}\n\nid: 1\ndata: {"tick":1}\n\nevent: end\ndata: done\n\n'
        if "/fn/node-stream" in body or "invoke_with_response_stream" in body:
            assert r.stdout.endswith("streamed from node\n"), r.stdout
        if "/fn/node-native" in body:
            assert r.stdout.endswith("streamed by a generator\n"), r.stdout
        if "/fn/gcp-sse" in body:
            assert r.stdout.endswith("data: 0\n\ndata: 1\n\ndata: 2\n\n"), r.stdout
        if "websockets.connect" in body:
            assert r.stdout == "refused: 401\necho: hello\npushed: HI ALL\npushed: from outside\ngone\n", r.stdout
        if "--h2c" in body:  # (the block's comments are its output; this is the program's own line)
            assert r.stdout.endswith("HTTP/2 GET /hello?x=1\n"), r.stdout
        if "/fn/h2c-py/up" in body:
            assert r.stdout.splitlines()[-4:] == ["HTTP/2 GET /up", "HTTP/2 GET /known", "1.1 200", "2 400"]
    assert ran == 10
