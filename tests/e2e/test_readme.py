"""Runs the README's tour and the native HTTP section of docs/flavors.md, command by command, against a real
node, and checks every `# -> OUTPUT` comment: a newcomer's first commands must work as written.

The `make run` / `make test` blocks are not run here (they would start a second server and the whole suite);
what `make run` installs is checked by tests/cli/test_makefile.py. Lines are run as written except for the
rewrites in REWRITES (the node's own URL for 127.0.0.1:8080, an activation id for `<ID>`, a bound on
`--follow`), each one listed there so the test cannot drift from the README silently."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"^#\s*file:\s*(\S+)\s*$")
EXPECT = re.compile(r"\s#\s*->\s*(.+)$")

# What a line needs to run unattended; (pattern, replacement) applied in order.
REWRITES = [
    ("http://127.0.0.1:8080", "{url}"),
    ("polyfn activation <ID>", "polyfn activation $(polyfn activations reverse --json --limit 1 | "
                               "python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"id\"])')"),
    ("polyfn logs reverse --follow", "timeout 3 polyfn logs reverse --follow || [ $? -eq 124 ]"),
]


def sh_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def commands(code: str) -> list[str]:
    """A block's commands, one per item; a heredoc (`<<'PY'` … `PY`) stays with its command."""
    out: list[str] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            end = heredoc.group(1)
            body = []
            while i < len(lines) and lines[i] != end:
                body.append(lines[i])
                i += 1
            i += 1
            line = "\n".join([line, *body, end])
        out.append(line)
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-readme"))
    yield s
    s.stop()


def run_commands(node: Server, cwd: Path, code: str) -> int:
    env = {**os.environ, "POLYFN_DATA_DIR": str(node.data_dir), "POLYFN_URL": node.url, "NO_COLOR": "1",
           "COLUMNS": "200", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("POLYFN_API_KEY", None)
    ran = 0
    for cmd in commands(code):
        want = EXPECT.search(cmd.splitlines()[0])
        for old, new in REWRITES:
            cmd = cmd.replace(old, new.format(url=node.url))
        r = subprocess.run(["bash", "-c", "set -eo pipefail\n" + cmd], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, f"{cmd}\nexited {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"
        if want:
            assert want.group(1).strip() in r.stdout, f"{cmd}\nshould print {want.group(1)!r}, printed:\n{r.stdout}"
        ran += 1
    return ran


@pytest.mark.timeout(600)
def test_readme_tour_runs_as_written(node: Server, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    readme = (REPO / "README.md").read_text()
    ran = 0
    for lang, code in sh_blocks(readme):
        assert lang == "sh", f"a README block that is not sh cannot run:\n{code}"
        if code.lstrip().startswith("make "):
            continue
        ran += run_commands(node, tmp_path, code)
    assert ran >= 15


@pytest.mark.timeout(300)
def test_native_http_section_of_flavors_md_runs(node: Server, tmp_path: Path) -> None:
    doc = (REPO / "docs" / "flavors.md").read_text()
    section = doc[doc.index("## polyfn's own (`native`)"):]
    section = section[:section.index("\n## ", 1)]
    ran = 0
    for lang, code in sh_blocks(section):
        marker = MARKER.match(code.splitlines()[0])
        if marker:
            (tmp_path / marker.group(1)).write_text(code)
            continue
        assert lang == "sh"
        ran += run_commands(node, tmp_path, code)
    assert ran == 6
