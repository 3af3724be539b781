"""The tests' node fork server (nodefork.py) gives what `python -m polyfn serve` gives: the test's working directory
and settings, the exit status of a drain and of a kill, a failed start's message, and state of the node's own (two
forked nodes never share the per-process random prefix of their ids); and `Server.cli` what `python -m polyfn …`
prints and exits with."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import boto3
import pytest

from . import nodefork
from .conftest import REPO, start_server

pytestmark = pytest.mark.skipif(not nodefork.enabled(), reason="POLYFN_TEST_FORK=0: nodes are not forked")


def request_id(url: str, key: str) -> str:
    ddb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="polyfn-admin",
                       aws_secret_access_key=key)
    return ddb.list_tables()["ResponseMetadata"]["RequestId"]


def test_forked_nodes_run_as_python_m_polyfn_serve(tmp_path: Path) -> None:
    a = start_server(tmp_path / "a")
    b = start_server(tmp_path / "b")
    try:
        assert isinstance(a.proc, nodefork.ForkedProcess) and a.proc.pid != b.proc.pid
        assert os.readlink(f"/proc/{a.proc.pid}/cwd") == str(REPO)
        assert os.getsid(a.proc.pid) == a.proc.pid  # a session of its own, as start_new_session gives
        assert a.http.get("/healthz").status_code == 200
        a.deploy("hi", {"handler.py": "def handler(event, context):\n    return 'hi'\n"})
        listed = a.cli("list")  # the CLI, forked too: its output, its exit status
        assert listed.returncode == 0 and "hi" in listed.stdout, listed
        wrong = a.cli("no-such-command")
        assert wrong.returncode == 2 and "No such command" in wrong.stderr, wrong
        ra, rb = request_id(a.url, a.key), request_id(b.url, b.key)
        assert ra[:16] != rb[:16], (ra, rb)  # each process draws its own prefix
        assert a.stop(signal.SIGTERM) == 0  # drained and exited as a fresh interpreter does
        assert b.stop(signal.SIGKILL) == -signal.SIGKILL
        assert b.proc.poll() == -signal.SIGKILL
    finally:
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)


def test_a_forked_node_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as e:
        start_server(tmp_path / "a", env={"POLYFN_ARTIFACTS_URL": "s3://artifacts"})
    assert "exited with 1" in str(e.value) and "POLYFN_ARTIFACTS_ENDPOINT" in str(e.value), e.value
