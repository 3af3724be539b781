"""Every code block of docs/storage.md, run in order against a real node (with its object store on a port of its
own) through the shared runner (tests/e2e/docblocks.py; `# -> …` comments are output the block must print): the
`polyfn storage` tour, boto3 with the credentials `polyfn storage keys create` printed, and a storage trigger
added, listed and deleted. Two blocks are marked not run on the page (`polyfn serve` itself, and the s3-tests
conformance run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .docblocks import blocks, doc_env, run_page

DOC = REPO / "docs" / "storage.md"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-storagedocs"))
    yield s
    s.stop()


@pytest.mark.timeout(300)
def test_every_block_of_docs_storage_md_runs(node: Server, tmp_path: Path) -> None:
    env = {**doc_env(node.url, data_dir=node.data_dir), "COLUMNS": "200"}
    ran = 0
    for block, r in run_page(DOC, tmp_path, env, expect="arrow"):
        ran += 1
        if "polyfn storage presign" in block.code:
            assert "uploads/photo.jpg" in r.stdout and "X-Amz-Signature=" in r.stdout, r.stdout
            assert "deleted s3://images/uploads/photo.jpg" in r.stderr, r.stderr
        if "polyfn trigger list" in block.code:
            assert "st-thumbnail" in r.stdout and "images" in r.stdout, r.stdout
    assert ran == sum(b.kind == "sh" for b in blocks(DOC.read_text())) == 3
    assert [b.not_run is not None for b in blocks(DOC.read_text())].count(True) == 2
