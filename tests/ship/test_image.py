"""The container image: its entry point's capability check, and (opt-in) the whole image built and run.

The entry point is run here with capabilities really dropped (util-linux `setpriv`), and a stand-in `polyfn`:
it must name what is missing, still start polyfn (degraded mode), and refuse with status 78 under
POLYFN_REQUIRE_SANDBOX=1. Building the image needs root, podman, buildah, debootstrap and ten minutes, so that test
runs only with POLYFN_TEST_IMAGE=1 (deploy/docker/build-local.sh; docs/operations.md says what it verified).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "deploy" / "docker" / "entrypoint.sh"


@pytest.fixture
def fake_polyfn(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "polyfn").write_text('#!/bin/sh\necho "polyfn ran: $*"\n')
    (bin_dir / "polyfn").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def entrypoint(env: dict[str, str], *drop: str) -> subprocess.CompletedProcess[str]:
    argv = ["sh", str(ENTRYPOINT), "serve", "--port", "1"]
    if drop:
        if shutil.which("setpriv") is None or os.geteuid() != 0:
            if os.environ.get("CI") == "true":
                pytest.fail("setpriv (util-linux) and root are required under CI=true")
            pytest.skip("needs root and setpriv (util-linux) to drop capabilities")
        caps = ",".join(f"-{c}" for c in drop)
        argv = ["setpriv", "--bounding-set", caps, "--inh-caps=-all", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


def test_the_image_files_are_where_the_dockerfile_copies_them_from() -> None:
    text = (REPO / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), src
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0


def test_with_every_capability_polyfn_starts_without_a_word(fake_polyfn: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox's needs are root's")
    r = entrypoint(fake_polyfn)
    if "writable-cgroup" in r.stderr:  # a host whose cgroups are read-only: the check says so, truthfully
        pytest.skip("this host has no writable cgroup")
    assert r.returncode == 0 and r.stdout.strip() == "polyfn ran: serve --port 1" and r.stderr == "", r


def test_a_missing_capability_is_named_and_polyfn_runs_degraded(fake_polyfn: dict[str, str]) -> None:
    r = entrypoint(fake_polyfn, "sys_admin", "net_admin")
    assert r.returncode == 0 and r.stdout.strip() == "polyfn ran: serve --port 1", r
    assert "CAP_SYS_ADMIN" in r.stderr and "CAP_NET_ADMIN" in r.stderr and "CAP_SETUID" not in r.stderr, r.stderr
    assert "--privileged" in r.stderr


def test_require_sandbox_refuses_to_start_degraded(fake_polyfn: dict[str, str]) -> None:
    r = entrypoint({**fake_polyfn, "POLYFN_REQUIRE_SANDBOX": "1"}, "setuid")
    assert r.returncode == 78 and "polyfn ran" not in r.stdout, r
    assert "CAP_SETUID" in r.stderr and "not starting" in r.stderr


@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.environ.get("POLYFN_TEST_IMAGE") != "1",
                    reason="builds a Debian base and the image (root, podman, buildah, debootstrap, ~10 min): "
                           "set POLYFN_TEST_IMAGE=1")
def test_the_image_builds_and_answers() -> None:
    r = subprocess.run(["sh", str(REPO / "deploy" / "docker" / "build-local.sh")], capture_output=True, text=True,
                       timeout=1700)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert '"status":"ok"' in r.stdout and "built and answered /healthz" in r.stdout
