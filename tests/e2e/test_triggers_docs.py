"""Every code block of docs/triggers.md, run in order against a real node through the shared runner
(tests/e2e/docblocks.py; `# -> …` comments are output the block must print): an async invocation waited for,
one cancelled, one with a callback over plain HTTP; the dead-letter queue (list, show, replay, delete); and
triggers added, listed, described and deleted (`polyfn trigger delete ID`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .docblocks import blocks, doc_env, run_page

DOC = REPO / "docs" / "triggers.md"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-trigdocs"))
    yield s
    s.stop()


@pytest.mark.timeout(300)
def test_every_block_of_docs_triggers_md_runs(node: Server, tmp_path: Path) -> None:
    env = {**doc_env(node.url, data_dir=node.data_dir), "COLUMNS": "200"}
    ran = 0
    for block, r in run_page(DOC, tmp_path, env, expect="arrow"):
        ran += 1
        if "polyfn cancel" in block.code:
            assert "resized" in r.stdout and "stopped while it ran" in r.stdout, r.stdout
        if "polyfn dlq show" in block.code:
            shown = json.loads(r.stdout[r.stdout.index("\n{") + 1:r.stdout.index("\n}\n") + 2])
            assert shown["function"] == "broken" and shown["last_error"]["message"] == "no such photo", r.stdout
            assert r.stdout.count("replaying") == 2, r.stdout
        if "polyfn trigger list" in block.code:
            assert "resize-every-5" in r.stdout and "scheduled" in r.stdout and "connected" in r.stdout, r.stdout
            assert "published" in r.stdout and "(1 subscriber(s))" in r.stdout, r.stdout
    assert ran == sum(b.kind == "sh" for b in blocks(DOC.read_text())) == 3
    triggers = node.api.get("/v1/triggers", params={"function": "resize"}).json()
    assert [t["kind"] for t in triggers.get("triggers", triggers)] == ["topic"], triggers  # the cron one is deleted
