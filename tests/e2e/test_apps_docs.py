"""Runs every code block of docs/apps.md, in order, in one working directory, against a real node.

* a block whose first line is `// file: P`, `# file: P` or `<!-- file: P -->` is written to P;
* `sh` blocks run in bash (`set -euo pipefail`) with `polyfn` on PATH, POLYFN_DATA_DIR and POLYFN_URL set;
* other `js` blocks run as ES modules under Node from clients/js (so `firebase` resolves), with the SDK as
  `wx.cloud`, as a page would have it.

A line's trailing `// …` comment after `console.log(…)` (js), or `# …` after a command (sh), is output the block
must print, in that order. The page deployed by the static-pages block is then opened in headless Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .jsclients import ensure_modules

DOC = REPO / "docs" / "apps.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"^(?://|#|<!--)\s*file:\s*(\S+?)\s*(?:-->)?$")
PRELUDE = "import cloud from './src/polyfn-cloud.mjs';\nglobalThis.wx = { cloud };\n"


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(DOC.read_text())]


def expected_output(lang: str, code: str) -> list[str]:
    if lang == "js":
        return [m.group(1).strip() for m in re.finditer(r"console\.log\(.*\);\s*//\s*(.+)$", code, re.M)]
    if lang == "sh":
        return [m.group(1).strip() for m in re.finditer(r"^[^#\n]*\S\s+#\s*(.+)$", code, re.M)]
    return []


def assert_subsequence(want: list[str], lines: list[str], block: str) -> None:
    it = iter(line.strip() for line in lines)
    for w in want:
        assert any(line == w for line in it), f"expected output {w!r} not printed by:\n{block}\n--- got:\n" + \
            "\n".join(lines)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-docs"))
    yield s
    s.stop()


@pytest.mark.timeout(900)  # many real clients and processes in one test: slow on a loaded machine
def test_every_block_of_docs_apps_md_runs(node: Server, tmp_path: Path) -> None:
    js_dir = ensure_modules()
    env = {**os.environ, "POLYFN_DATA_DIR": str(node.data_dir), "POLYFN_URL": node.url, "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("POLYFN_API_KEY", None)
    ran = 0
    for i, (lang, code) in enumerate(blocks()):
        first = code.splitlines()[0] if code.strip() else ""
        marker = MARKER.match(first)
        if marker:
            path = tmp_path / marker.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
            continue
        if lang == "sh":
            r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + code], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
        elif lang == "js":
            script = js_dir / f".doctest-{os.getpid()}-{i}.mjs"
            script.write_text(PRELUDE + code + "\nprocess.exit(0);\n")
            try:
                r = subprocess.run(["node", script.name], cwd=js_dir, env=env, capture_output=True, text=True,
                                   timeout=300)
            finally:
                script.unlink()
        else:
            raise AssertionError(f"a {lang or 'plain'} block that is no file cannot run:\n{code}")
        assert r.returncode == 0, f"block {i} ({lang}) failed:\n{code}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"
        assert_subsequence(expected_output(lang, code), r.stdout.splitlines(), code)
        ran += 1
    assert ran >= 12


@pytest.mark.timeout(300)  # many real clients and processes in one test: slow on a loaded machine
def test_the_static_page_of_the_docs_works_in_a_browser(node: Server) -> None:
    """The page the static-pages block deployed, in Chromium: it calls its function through the SDK."""
    if not Path("/usr/bin/chromium").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required under CI=true")
        pytest.skip("no /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    if node.http.get("/sites/hello/").status_code != 200:
        pytest.skip("runs after test_every_block_of_docs_apps_md_runs deployed the page")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page()
        page.goto(f"{node.url}/sites/hello/")
        page.wait_for_function("document.getElementById('out').textContent.startsWith('the answer')", timeout=30000)
        assert page.text_content("#out") == "the answer is 42"
        browser.close()
