"""Every code block of docs/database.md, run in order against a real node through the shared runner
(tests/e2e/docblocks.py; `# -> …` comments are output the block must print): the aws CLI against the DynamoDB
API, grants, a change trigger, the `polyfn db` commands (export, then import into a new table) and the
wx.cloud database over plain HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .docblocks import blocks, doc_env, run_page

DOC = REPO / "docs" / "database.md"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-dbdocs"))
    yield s
    s.stop()


@pytest.mark.timeout(300)
def test_every_block_of_docs_database_md_runs(node: Server, tmp_path: Path) -> None:
    ran = 0
    for block, r in run_page(DOC, tmp_path, doc_env(node.url, data_dir=node.data_dir), expect="arrow"):
        ran += 1
        if "db import" in block.code:  # the restored table holds what was put into the first
            assert json.loads(r.stdout.splitlines()[-1]) == {"id": {"S": "k1"}, "n": {"N": "3"}}, r.stdout
        if "collection.get" in block.code:
            assert [d["title"] for d in json.loads(r.stdout)["data"]] == ["write docs"], r.stdout
    assert ran == sum(b.kind == "sh" for b in blocks(DOC.read_text())) == 6
    grants = node.api.get("/v1/triggers", params={"function": "my-function"}).json()
    assert any(t["kind"] == "dynamodb" for t in grants.get("triggers", grants)), grants
