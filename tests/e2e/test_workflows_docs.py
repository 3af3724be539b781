"""Every code block of docs/workflows.md, run in order against a real server (a block with `file=PATH` is written
to that path first; `bash` blocks run with `bash -e`, `python` blocks with this interpreter), each must succeed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import REPO

DOC = REPO / "docs" / "workflows.md"
HOST_FS = True  # (the module's server: functions may write to the host's /tmp; these do not need it)
_FENCE = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```$", re.M | re.S)


def blocks(text: str) -> list[tuple[str, str | None, str]]:
    return [(m[1], m[2], m[3]) for m in _FENCE.finditer(text)]


def test_the_page_has_blocks_of_every_kind() -> None:
    kinds = {(lang, file is not None) for lang, file, _ in blocks(DOC.read_text())}
    assert {("bash", False), ("python", False), ("python", True), ("json", True)} <= kinds


def test_every_block_runs(server: Any, tmp_path: Path) -> None:
    env = {**os.environ, "POLYFN_URL": server.url, "POLYFN_API_KEY": server.key, "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for k in ("POLYFN_DATA_DIR", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        env.pop(k, None)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
    ran = 0
    for lang, file, body in blocks(DOC.read_text()):
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
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"this block of docs/workflows.md failed ({r.returncode}):\n{body}\n--- stdout\n" \
                                  f"{r.stdout}\n--- stderr\n{r.stderr}"
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
