"""docs/operations.md "Deploying": the systemd unit, and the backup and restore blocks run as written.

The backup and restore blocks run in bash, line for line, with the data dir and /root pointed at temporary
directories; their `systemctl stop/start polyfn` lines stop and start this test's own node (no systemd is PID 1
here). The unit is checked by `systemd-analyze verify` and its ExecStart is run with its environment. The Helm
values blocks of the same section are rendered by tests/ship/test_helm.py; the wheel's block by test_wheel.py.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..e2e.conftest import REPO, Server, start_server

DOC = REPO / "docs" / "operations.md"
UNIT = REPO / "deploy" / "systemd" / "polyfn.service"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
POLYFN = str(Path(sys.executable).parent / "polyfn")  # the polyfn script of the venv running the tests


def section(title: str) -> str:
    return DOC.read_text().split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is required under CI=true (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / "polyfn.service"
    copy.write_text(UNIT.read_text().replace("/opt/polyfn/bin/polyfn", POLYFN))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # it exits 0 on settings it ignores, and says so on stderr: both must be clean
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_the_units_command_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv == ["/opt/polyfn/bin/polyfn", "serve"], argv
    assert service["KillMode"] == "mixed" and service["Delegate"] == "yes"
    env = dict(kv.split("=", 1) for kv in shlex.split(service["Environment"]))
    assert env["POLYFN_DATA_DIR"] == "/var/lib/polyfn" and service["StateDirectory"] == "polyfn"
    env.pop("POLYFN_DATA_DIR")  # the test's own data dir and free port (what /etc/polyfn/polyfn.env would set)
    env.pop("POLYFN_PORT")
    node = start_server(tmp_path / "data", env=env, program=(POLYFN,))
    try:
        assert node.http.get("/healthz").json()["status"] == "ok"
        node.deploy("unitfn", {"handler.py": "def handler(event, context):\n    return 'up'\n"})
        assert node.http.get("/fn/unitfn").text == "up"
    finally:
        # KillMode=mixed: SIGTERM to the main process only; it must be gone within TimeoutStopSec
        code = node.stop(signal.SIGTERM, timeout=float(service["TimeoutStopSec"]))
    assert code == 0, node.log.read_text()[-3000:]


def bash(block: str, data_dir: Path, backup_dir: Path) -> None:
    script = block.replace("/var/lib/polyfn", str(data_dir)).replace("/root/", f"{backup_dir}/")
    r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{script}\nfailed ({r.returncode}):\n{r.stdout}\n{r.stderr}"


def run_block(block: str, node: Server | None, data_dir: Path, backup_dir: Path) -> Server | None:
    """Run a documented block; `systemctl stop|start polyfn` lines stop or start the test's node."""
    pending: list[str] = []
    for line in block.splitlines():
        if line.strip() in ("systemctl stop polyfn", "systemctl start polyfn"):
            if pending:
                bash("\n".join(pending), data_dir, backup_dir)
                pending = []
            if line.strip().endswith("stop polyfn"):
                assert node is not None
                assert node.stop(signal.SIGTERM) == 0
                node = None
            else:
                node = start_server(data_dir, host_fs=True)
        else:
            pending.append(line)
    if pending:
        bash("\n".join(pending), data_dir, backup_dir)
    return node


@pytest.mark.timeout(600)
def test_backup_and_restore_blocks_bring_everything_back(tmp_path: Path) -> None:
    backup, restore = [code for lang, code in FENCE.findall(section("Backup and restore")) if lang == "sh"][:2]
    assert "tar" in backup and "tar" in restore and "node.key" in backup
    data_dir, backup_dir = tmp_path / "data", tmp_path / "backups"
    backup_dir.mkdir()
    node: Server | None = start_server(data_dir, host_fs=True)
    assert node is not None
    try:
        node.cli("secret", "set", "greeting", input="hello from the backup", check=True)
        node.deploy("keeper", {"handler.py": (
            "import os\n\ndef handler(event, context):\n    return os.environ['greeting']\n")},
            secrets=["greeting:env"])
        first = node.api.post("/v1/functions/keeper/invoke", json={})
        assert first.status_code == 200 and first.json() == "hello from the backup", first.text
        activation = first.headers["x-polyfn-activation-id"]
        (tmp_path / "obj.txt").write_text("an object")
        node.cli("storage", "mb", "s3://kept", check=True)
        node.cli("storage", "cp", str(tmp_path / "obj.txt"), "s3://kept/obj.txt", check=True)

        node = run_block(backup, node, data_dir, backup_dir)
        assert node is not None
        assert (backup_dir / "polyfn-backup.tgz").is_file() and (backup_dir / "polyfn-node.key").is_file()
        # made after the backup: the restore must not have it
        node.deploy("latecomer", {"handler.py": "def handler(event, context):\n    return 1\n"})

        node = run_block(restore, node, data_dir, backup_dir)
        assert node is not None
        names = {f["name"] for f in node.api.get("/v1/functions").json()["functions"]}
        assert "keeper" in names and "latecomer" not in names, names
        again = node.api.post("/v1/functions/keeper/invoke", json={})  # the secret decrypts with the kept node key
        assert again.status_code == 200 and again.json() == "hello from the backup", again.text
        assert node.api.get(f"/v1/activations/{activation}").status_code == 200
        out = tmp_path / "back.txt"
        node.cli("storage", "cp", "s3://kept/obj.txt", str(out), check=True)
        assert out.read_text() == "an object"
    finally:
        if node is not None:
            node.stop()
