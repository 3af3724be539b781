"""Issue 18, item 6: each function's own ephemeral storage (`/tmp`, `--ephemeral-storage MB`), its size
enforced per instance with an error that names the setting; the sandbox's peak memory recorded on every
activation ("max memory used", as in Lambda's REPORT line); a child process killed for memory said so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .. import needs
from .conftest import Server, error_code, start_server

WRITE = '''
import os
def handler(event, context):
    st = os.statvfs("/tmp")
    size_mb = st.f_blocks * st.f_frsize // (1024 * 1024)
    with open("/tmp/blob", "wb") as f:
        for _ in range(event["mb"]):
            f.write(b"x" * (1024 * 1024))
    os.remove("/tmp/blob")
    return {"tmp_mb": size_mb, "wrote": event["mb"]}
'''

NODE_WRITE = r"""
const fs = require('fs');
exports.handler = async (event) => {
  const chunk = Buffer.alloc(1024 * 1024, 120);
  const fd = fs.openSync('/tmp/blob', 'w');
  try {
    for (let i = 0; i < event.mb; i++) fs.writeSync(fd, chunk);
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync('/tmp/blob');
  }
  return { wrote: event.mb };
};
"""

CHILD_OOM = '''
import subprocess, sys
def handler(event, context):
    r = subprocess.run([sys.executable, "-c", "b = bytearray(400 * 2**20); print(len(b))"], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"the child ended with {r.returncode}")
    return "survived"
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("ephemeral"))
    yield s
    s.stop()


def _needs_mounts() -> None:
    why = needs.kernel_lacks("mount")
    if why:
        needs.missing(f"a private /tmp needs the mount namespace: {why}")


def test_each_function_gets_the_tmp_it_asks_for(server: Server) -> None:
    _needs_mounts()
    server.deploy("tmp-default", {"handler.py": WRITE}, memory=256)
    server.deploy("tmp-small", {"handler.py": WRITE}, memory=256, ephemeral_storage=32)
    # the 88 MiB video that filled the old node-wide 64 MB /tmp fits the default (Lambda's 512 MB)
    r = server.api.post("/v1/functions/tmp-default/invoke", json={"mb": 88})
    assert r.status_code == 200 and r.json() == {"tmp_mb": 512, "wrote": 88}, r.text
    r = server.api.post("/v1/functions/tmp-small/invoke", json={"mb": 8})
    assert r.status_code == 200 and r.json()["tmp_mb"] == 32, r.text
    r = server.api.post("/v1/functions/tmp-small/invoke", json={"mb": 40})  # more than its /tmp holds
    assert r.status_code == 500, r.text
    message = r.json()["errorMessage"]
    assert "No space left on device" in message and "ephemeral storage is 32 MB" in message, message
    assert "--ephemeral-storage" in message, message
    described = " ".join(server.cli("describe", "tmp-small", check=True).stdout.split())
    assert "32 MB" in described, described
    server.deploy("tmp-node", {"index.js": NODE_WRITE}, runtime="node", handler="index.handler", memory=256,
                  ephemeral_storage=32)
    r = server.api.post("/v1/functions/tmp-node/invoke", json={"mb": 8})
    assert r.status_code == 200 and r.json() == {"wrote": 8}, r.text
    r = server.api.post("/v1/functions/tmp-node/invoke", json={"mb": 40})
    assert r.status_code >= 500 and "ENOSPC" in r.text and "ephemeral storage is 32 MB" in r.text, r.text


def test_bad_ephemeral_storage_is_refused(server: Server) -> None:
    for size in (4, 20_000, "big"):
        r = server.api.post("/v1/functions", json={"name": "tmp-bad", "files": {"handler.py": WRITE},
                                                   "ephemeral_storage": size})
        assert r.status_code == 400 and error_code(r) == "invalid_spec", (size, r.text)
        assert "ephemeral_storage" in r.text, r.text
    r = server.cli("deploy", "--name", "tmp-bad", "--ephemeral-storage", "5", str(Path(__file__)))
    assert r.returncode != 0 and "ephemeral_storage" in r.stdout + r.stderr, r.stdout + r.stderr


def test_max_memory_used_is_recorded_and_shown(server: Server) -> None:
    """What /tmp holds is memory (a tmpfs): 48 MB written show in the sandbox's peak."""
    _needs_mounts()
    if needs.kernel_lacks("cgroup"):
        needs.missing("max memory used is read from the instance's memory cgroup: " + needs.kernel_lacks("cgroup"))
    server.deploy("tmp-peak", {"handler.py": WRITE}, memory=256)
    r = server.api.post("/v1/functions/tmp-peak/invoke", json={"mb": 48})
    assert r.status_code == 200, r.text
    aid = r.headers["x-polyfn-activation-id"]
    act = server.activation(aid)
    assert 48 < act["max_memory_mb"] < 256, act
    shown = " ".join(server.cli("activation", aid, check=True).stdout.split())
    assert f"max memory used {act['max_memory_mb']:.0f} MB" in shown, shown
    console = httpx.Client(base_url=server.url, follow_redirects=False)
    assert console.post("/console/login", data={"key": server.key}).status_code == 303
    page = console.get(f"/console/activations/{aid}")
    assert page.status_code == 200 and f'id="act-memory">{int(act["max_memory_mb"] + 0.5)} MB' in page.text, page.text


def test_a_child_killed_for_memory_is_said(server: Server) -> None:
    if needs.kernel_lacks("cgroup"):
        needs.missing("an OOM kill inside the function's limit needs a memory cgroup: " + needs.kernel_lacks("cgroup"))
    server.deploy("child-oom", {"handler.py": CHILD_OOM}, memory=128)
    r = server.api.post("/v1/functions/child-oom/invoke", json={})
    assert r.status_code == 500, r.text
    act = server.activation(r.headers["x-polyfn-activation-id"])
    lines = [ln[2] if isinstance(ln, list) else ln["line"] for ln in act["logs"]]
    assert any("killed for memory" in ln and "128 MB" in ln for ln in lines), lines
    r = server.api.post("/v1/functions/child-oom/invoke", json={})  # the same instance lived on
    assert r.status_code == 500, r.text
