"""Runs every code block of docs/apps.md, in order, in one working directory, against a real node, through the
shared runner (tests/e2e/docblocks.py: file blocks, `sh` in bash with `set -euo pipefail`, expected output from
trailing comments). `sh` blocks have `polyfn` on PATH, POLYFN_DATA_DIR and POLYFN_URL set; `js` blocks run as ES
modules under Node from clients/js (so `firebase` resolves), with the SDK as `wx.cloud`, as a page would have
it. A line's trailing `// …` comment after `console.log(…)` (js), or `# …` after a command (sh), is output the
block must print, in that order. The page deployed by the static-pages block is then opened in headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .docblocks import doc_env, run_page
from .jsclients import ensure_modules

DOC = REPO / "docs" / "apps.md"
PRELUDE = "import cloud from './src/polyfn-cloud.mjs';\nglobalThis.wx = { cloud };\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-docs"))
    yield s
    s.stop()


@pytest.mark.timeout(900)  # many real clients and processes in one test: slow on a loaded machine
def test_every_block_of_docs_apps_md_runs(node: Server, tmp_path: Path) -> None:
    js_dir = ensure_modules()
    env = doc_env(node.url, data_dir=node.data_dir)
    ran = 0
    for _block, _result in run_page(DOC, tmp_path, env, expect="comment", js_dir=js_dir, js_prelude=PRELUDE):
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
