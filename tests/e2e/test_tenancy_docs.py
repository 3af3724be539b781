"""Every block of docs/tenancy.md runs, in order, against a real node with the real CLI and curl."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, Server

DOC = REPO / "docs" / "tenancy.md"
_FENCE = re.compile(r"^```bash\n(.*?)^```$", re.M | re.S)


@pytest.mark.timeout(300)  # one shell running ~40 CLI, curl and aws commands: slow on a loaded machine
def test_every_block_of_the_tenancy_docs_runs(server: Server, tmp_path: Path) -> None:
    env = {**os.environ, "POLYFN_URL": server.url, "NO_COLOR": "1", "COLUMNS": "200",
           "POLYFN_DATA_DIR": str(server.data_dir),  # the admin key when POLYFN_API_KEY is unset
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("POLYFN_API_KEY", None)
    env.pop("POLYFN_NAMESPACE", None)
    blocks = _FENCE.findall(DOC.read_text())
    assert len(blocks) >= 4
    script = "\n".join(blocks)  # one shell: the blocks build on each other (exports, key files)
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"docs/tenancy.md failed:\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    assert '{"hello": "from team-a"}' in r.stdout.replace("\n", "") or '"from team-a"' in r.stdout
    assert "\n404\n" in f"\n{r.stdout}"
    assert "namespace team-a deleted" in r.stdout and "namespace team-b deleted" in r.stdout
    assert server.api.get("/v1/namespaces").json()["namespaces"] == [
        {"name": "default", "description": "", "created_at": 0.0, "quotas": dict.fromkeys(
            ("functions", "instances", "memory_mb", "invocations_per_second", "async_backlog", "storage_bytes",
             "db_items", "db_bytes"))}]
