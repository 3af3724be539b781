"""Every code block of docs/observability.md and docs/console.md, run in order against one real node through the
shared runner (tests/e2e/docblocks.py; `# -> …` comments are output the block must print).

`polyfn top` without `--once` is a live view that runs until Ctrl-C: REWRITES runs each such line under a
pseudo-terminal (`script`, so rich draws as it does for a reader) and interrupts it after 4 s; the test checks
its first screen (the title line naming the node). That is the only line not run as written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .docblocks import blocks, doc_env, run_page

OBSERVABILITY = REPO / "docs" / "observability.md"
CONSOLE = REPO / "docs" / "console.md"
STRIP = r"sed -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\r/\n/g'"
REWRITES = [(r"^(polyfn top(?![^#\n]*--once)(?: -[-\w]+(?: \d+)?)*?)[ \t]+#(.*)$",
             r"{ timeout -s INT 4 script -qfec '\1' /dev/null || [ $? -eq 124 ]; } | " + STRIP.replace("\\", "\\\\") + r" | grep -m1 '^polyfn top'  #\2")]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-obsdocs"))
    s.deploy("hello", {"handler.py": "def handler(event, context):\n    return 'hi'\n"})
    for _ in range(3):
        assert s.http.get("/fn/hello").status_code == 200
    yield s
    s.stop()


@pytest.mark.timeout(300)
def test_every_block_of_docs_observability_md_runs(node: Server, tmp_path: Path) -> None:
    env = {**doc_env(node.url, data_dir=node.data_dir), "COLUMNS": "200"}
    ran = 0
    for block, r in run_page(OBSERVABILITY, tmp_path, env, expect="arrow", rewrites=REWRITES, timeout=120):
        ran += 1
        if "polyfn top" in block.code:
            titles = [ln for ln in r.stdout.splitlines() if ln.startswith(f"polyfn top  {node.url}  1 functions")]
            assert len(titles) == 3, r.stdout  # two live views (first screen) and --once
            assert any(ln.split()[:2] == ["hello", "1"] for ln in r.stdout.splitlines()), r.stdout
            assert "['functions', 'now', 'window_s', 'workflows']" in r.stdout, r.stdout
    assert ran == sum(b.kind == "sh" for b in blocks(OBSERVABILITY.read_text())) == 1


@pytest.mark.timeout(300)
def test_every_block_of_docs_console_md_runs(node: Server, tmp_path: Path) -> None:
    env = doc_env(node.url, data_dir=node.data_dir)
    ran = 0
    for block, r in run_page(CONSOLE, tmp_path, env, expect="arrow"):
        ran += 1
        if "report-daily" in block.code:
            assert r.stdout.splitlines()[-2] != "0", r.stdout  # the panel listed the CLI's trigger
    assert ran == sum(b.kind == "sh" for b in blocks(CONSOLE.read_text())) == 3
    assert node.api.get("/v1/triggers", params={"function": "report"}).json() in ([], {"triggers": []})
