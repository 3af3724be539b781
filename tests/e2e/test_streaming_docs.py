"""Every code block of docs/streaming.md, run in order against a real server (a block with `file=PATH` is written
to that path first; `bash` blocks run with `bash -e`, `python` blocks with this interpreter), each must succeed
and show what the page says it shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO

DOC = REPO / "docs" / "streaming.md"
_FENCE = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```$", re.M | re.S)

pytestmark = pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                                reason="Node.js is not installed")


def blocks(text: str) -> list[tuple[str, str | None, str]]:
    return [(m[1], m[2], m[3]) for m in _FENCE.finditer(text)]


def test_every_block_runs(server: Any, tmp_path: Path) -> None:
    env = {**os.environ, "POLYFN_URL": server.url, "POLYFN_API_KEY": server.key, "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for k in ("POLYFN_DATA_DIR", "AWS_PROFILE"):
        env.pop(k, None)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
    text = DOC.read_text()
    expected_sse = next(body for lang, _, body in blocks(text) if lang == "text")
    ran = 0
    for lang, file, body in blocks(text):
        if file is not None:
            path = tmp_path / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            continue
        if lang == "bash":
            cmd = ["bash", "-e", "-c", body]
        elif lang == "python":
            cmd = [sys.executable, "-c", body]
        else:
            continue
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"this block of docs/streaming.md failed ({r.returncode}):\n{body}\n--- stdout\n" \
                                  f"{r.stdout}\n--- stderr\n{r.stderr}"
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
    assert ran == 8
