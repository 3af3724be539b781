"""docs/flavors.md's blocks before its native section, run as written against a real node through the shared runner
(tests/e2e/docblocks.py): `polyfn deploy` of the seed's Lambda function with what detection says, and
`polyfn invoke --event` of each kind to a function returning its event (`# -> …` comments are output a block
must print). The native section is run by tests/e2e/test_readme.py::test_native_http_section_of_flavors_md_runs
and the C# section's commands by tests/e2e/test_dotnet.py::test_documented_commands_run, so they are not run here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .docblocks import Block, blocks, doc_env, run_page

DOC = REPO / "docs" / "flavors.md"


def ours(block: Block) -> bool:
    text = DOC.read_text()
    return block.line < text.count("\n", 0, text.index("\n## polyfn's own (`native`)")) + 1


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-flavorsdocs"))
    yield s
    s.stop()


@pytest.mark.timeout(300)
def test_blocks_before_the_native_section_of_docs_flavors_md_run(node: Server, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {**doc_env(node.url, data_dir=node.data_dir), "COLUMNS": "200"}
    ran = 0
    for block, r in run_page(DOC, tmp_path, env, expect="arrow", only=ours, timeout=120):
        ran += 1
        if "--name lambda-reverse" in block.code:  # the output the page shows, on this node's URL
            shown = [ln[2:].strip().replace("http://127.0.0.1:8080", node.url)
                     for ln in block.code.splitlines() if ln.startswith("# ")]
            printed = [ln.strip() for ln in r.stdout.splitlines()]
            assert shown and shown == printed, f"page shows {shown}, the CLI printed {printed}"
    assert ran == 2
    page = blocks(DOC.read_text())
    assert [b.kind for b in page if ours(b)] == ["sh", "file", "sh"]
    assert node.cli("invoke", "lambda-reverse", "--data", '{"message": "abc"}', check=True).stdout == '{"message": "cba"}'
