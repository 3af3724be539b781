"""`polyfn new` writes runnable functions whose own tests pass; `polyfn run` invokes one once without a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyfn.scaffold import RUN_ARGS, TEMPLATES, write

from .. import needs
from . import nodefork

REPO = Path(__file__).resolve().parents[2]


def polyfn(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "POLYFN_DATA_DIR": str(cwd / "unused-data")}
    if nodefork.enabled():  # `python -m polyfn …` forked from the fork server (polyfn imported once)
        return nodefork.run(list(args), env, cwd, None, timeout)
    return subprocess.run([sys.executable, "-m", "polyfn", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_template_tests_pass(template: str, tmp_path: Path) -> None:
    d = tmp_path / "demo-fn"
    write(template, "demo-fn", d)
    t = TEMPLATES[template]
    if t.language == "python":
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    else:
        needs.tool("node")
        cmd = ["node", "--test", "test/"]
    res = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_run_the_scaffold(template: str, tmp_path: Path) -> None:
    if TEMPLATES[template].language == "node":
        needs.tool("node")
    r = polyfn("new", "demo-fn", "--template", template, cwd=tmp_path)
    assert "test it:" in r.stdout and "deploy it:" in r.stdout
    import shlex

    args = shlex.split(RUN_ARGS[template].replace("%DIR%", "demo-fn"))
    r = polyfn("run", "demo-fn", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "success (HTTP 200)" in r.stderr
    assert EXPECTED[template] in r.stdout


#: What each template's first run (RUN_ARGS) prints.
EXPECTED = {"native-python": "olleh", "aws-python": "olleh", "aws-node": "Go Serverless", "gcp-python": "Hello, polyfn!",
            "openfaas-python": "olleh", "kubeless-python": "cba", "aliyun-python": "cba", "openwhisk-node": "cba",
            "tencent-node": "hello scf"}


def test_run_events_and_failures(tmp_path: Path) -> None:
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "handler.py").write_text(
        "def handler(event, context):\n"
        "    if isinstance(event, dict) and event.get('fail'):\n"
        "        raise ValueError('no')\n"
        "    return {'http': event.method + ' ' + event.path} if hasattr(event, 'method') else event\n")
    r = polyfn("run", "ev", "--event", "timer", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ce = json.loads(r.stdout)
    assert ce["type"] == "io.polyfn.timer.fired" and ce["specversion"] == "1.0"
    r = polyfn("run", "ev", "--event", "http", "--method", "PUT", "--path", "/a/b?x=1", cwd=tmp_path)
    assert json.loads(r.stdout) == {"http": "PUT /a/b"}
    r = polyfn("run", "ev", "--data", '{"fail": true}', cwd=tmp_path)
    assert r.returncode == 6
    assert json.loads(r.stdout)["errorType"] == "ValueError"
    r = polyfn("run", "ev", "--event", "nonsense", cwd=tmp_path)
    assert r.returncode == 1 and "neither a file nor one of" in r.stderr
    r = polyfn("run", "ev", "--data", "{bad", cwd=tmp_path)
    assert r.returncode == 1 and "not valid JSON" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "handler.py").write_text("def handler(event, context)\n")
    r = polyfn("run", "bad", cwd=tmp_path)
    assert r.returncode == 1 and "syntax_error" in r.stderr


def test_new_refuses_to_overwrite(tmp_path: Path) -> None:
    r = polyfn("new", "x", "--template", "gcp-python", cwd=tmp_path)
    assert r.returncode == 0
    assert "cannot run it yet" not in r.stdout
    r = polyfn("new", "x", cwd=tmp_path)
    assert r.returncode == 1 and "not empty" in r.stderr
    r = polyfn("new", "y", "--template", "cobol", cwd=tmp_path)
    assert r.returncode == 2
