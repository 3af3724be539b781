"""docs/compat.md run as written against a real node, in order, through the shared runner (tests/e2e/docblocks.py;
`# -> …` comments are output a block must print): keys with the aws CLI (an `invoke` key invokes and is refused
DeleteFunction), boto3 creating and invoking a function, the aws CLI creating and invoking one, versions and a
weighted alias, `polyfn deploy -f` of an OpenFaaS stack then curl on the gateway routes, `deploy -f` of each
definition format in examples/compat/, and `polyfn new` / `run` / `deploy -f` of a scaffold.

The reader's setup is rebuilt: `$URL` and `$KEY` set, the admin key at ~/.local/share/polyfn/admin.key (HOME is a
temporary folder whose polyfn data dir is the node's) and `examples/` as in a checkout. Not run here: the OpenWhisk
section (tests/e2e/test_openwhisk_events.py::test_docs_openwhisk_section_runs runs its two blocks) and the faas-cli
block, marked on the page (faas-cli cannot be installed here; tests/e2e/test_openfaas_api.py sends what it sends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Server, start_server
from .docblocks import Block, blocks, doc_env, run_page

DOC = REPO / "docs" / "compat.md"


def _openwhisk_lines() -> range:
    text = DOC.read_text()
    start = text.index("\n## OpenWhisk REST API (wsk)")
    end = text.index("\n## ", start + 1)
    return range(text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 1)


def ours(block: Block) -> bool:
    return block.line not in _openwhisk_lines()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-compatdocs"))
    yield s
    s.stop()


@pytest.mark.timeout(300)
def test_every_block_of_docs_compat_md_runs(node: Server, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".local" / "share").mkdir(parents=True)
    (home / ".local" / "share" / "polyfn").symlink_to(node.data_dir)
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    env = {**doc_env(node.url, data_dir=node.data_dir), "HOME": str(home), "URL": node.url, "KEY": node.key,
           "COLUMNS": "200"}
    rewrites = [(r'endpoint_url="http://127\.0\.0\.1:8080"', f'endpoint_url="{node.url}"')]
    ran: list[str] = []
    for block, r in run_page(DOC, work, env, expect="arrow", rewrites=rewrites, only=ours, timeout=120):
        ran.append(block.lang)
        code = block.code
        if "lambda delete-function" in code:  # the `invoke` key is refused, with Lambda's own error code
            assert "AccessDeniedException" in r.stderr, r.stderr
        if "lam.create_function" in code:
            assert r.stdout.strip() == "{'message': 'olleh'}", r.stdout
        if "lam.create_alias" in code:
            first, second, routed, last = r.stdout.strip().splitlines()
            assert (first, second, last) == ("1", "2", "2"), r.stdout
            assert routed in ("""1 b'{"message": "ih"}'""", """2 b'{"message": "IH"}'"""), routed
        if "deploy -f examples/compat/sam/template.yaml" in code:
            assert "'GREETING': 'hi from us-east-1'" in r.stdout, r.stdout  # the --param resolved in !Sub
            assert node.api.get("/v1/functions/sam-reverse").status_code == 404  # --dry-run deploys nothing
            for name in ("stack-reverse", "sls-hello", "httpreverse"):
                assert node.api.get(f"/v1/functions/{name}").status_code == 200, name
            assert node.http.get("/fn/httpreverse", params={"text": "abc"}).text == "cba"
    assert ran == ["sh", "python", "sh", "python", "sh", "sh", "sh"]
    page = blocks(DOC.read_text())
    assert [b.not_run for b in page if b.not_run] == ["faas-cli is not installable here (Go modules unreachable)"]
    assert sum(b.kind == "sh" and not ours(b) for b in page) == 2  # the OpenWhisk test's
    cron = [t for t in node.api.get("/v1/triggers").json()["triggers"] if t["function"] == "stack-reverse"]
    assert [t["config"]["schedule"] for t in cron] == ["*/5 * * * *"], cron  # the stack's annotation, once
    assert json.loads((work / "out.json").read_text()) == {"message": "olleh"}
    assert (work / "hello" / "template.yaml").is_file()  # the scaffold `polyfn deploy -f hello` deployed
