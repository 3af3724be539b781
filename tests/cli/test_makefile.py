"""`make run` gives a newcomer everything the docs use: the broker trigger clients and the client tools the
README, docs/ and the scenarios' READMEs call (issue #18: broker triggers failed until `pip install
'polyfn[brokers]'`, which no doc mentioned)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def extras() -> dict[str, list[str]]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def dist_name(req: str) -> str:
    return re.split(r"[<>=!\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_make_run_installs_the_brokers_and_tour_extras() -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    plan = subprocess.run(["make", "-n", "-B", "--no-print-directory", "run"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    install = [line for line in plan.splitlines() if "pip install" in line and " -e " in line]
    assert install and "[brokers,tour]" in install[-1], plan
    assert "polyfn serve" in plan.splitlines()[-1] and "--examples" in plan.splitlines()[-1]


def test_every_python_import_in_the_docs_shell_snippets_is_installed_by_make_run() -> None:
    """`python3 -c "import X ..."` lines in the README, docs/ and the scenarios' READMEs run in the venv
    `make run` made: each imported distribution is in polyfn's own dependencies or [brokers]/[tour]."""
    ex = extras()
    provided = {dist_name(r) for r in ex["brokers"] + ex["tour"]}
    provided |= {dist_name(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "examples" / "scenarios").glob("*/README.md"))]
    dists = packages_distributions()
    seen = set()
    for page in pages:
        for snippet in re.findall(r"python3? -c [\"'](.*?)[\"']", page.read_text(), re.S):
            for mod in re.findall(r"(?:^|[;\n]\s*)(?:from|import)\s+([A-Za-z_][\w]*)", snippet):
                if mod in sys.stdlib_module_names or mod not in dists:  # the standard library; a doc's own file
                    continue
                names = {d.lower().replace("_", "-") for d in dists[mod]}
                assert names & provided, f"{page.name}: `import {mod}` needs {names}, which `make run` does not install"
                seen.add(mod)
    assert {"PIL", "pika"} <= seen  # the scenarios' READMEs use both
