"""The repository's JavaScript package `clients/js` (the client SDK; its dev dependencies are the real
`firebase` and `ali-oss` npm clients) for tests: installed with `npm ci` once, run with Node.

Without Node or the npm registry the tests that need it skip with the reason, except under CI=true, where
that is a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CLIENTS_JS = Path(__file__).resolve().parents[2] / "clients" / "js"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def ensure_modules() -> Path:
    """clients/js with its node_modules installed (npm ci from the lock file; once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("Node.js and npm are needed for the JavaScript client tests")
    marker = CLIENTS_JS / "node_modules" / ".package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < (CLIENTS_JS / "package-lock.json").stat().st_mtime:
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=CLIENTS_JS,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            _unavailable(f"npm ci in clients/js failed: {r.stderr[-2000:]}")
    return CLIENTS_JS


def run_node(script: str, env: dict[str, str], timeout: float = 180) -> dict[str, Any]:
    """Run `clients/js/<script>` and return the JSON object it printed last."""
    cwd = ensure_modules()
    r = subprocess.run(["node", script], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **env})
    assert r.returncode == 0, f"node {script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"node {script} printed no JSON:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(lines[-1])
