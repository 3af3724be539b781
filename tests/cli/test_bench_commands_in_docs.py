"""Every `bench/*.py` command line the docs show (docs/*.md, README.md) names a script that exists, and its
argument parser accepts the line's flags and values as written.

Benches take minutes each, so they are not run here: each command runs with `argparse` patched to stop right
after a successful parse (exit 0, "parsed"); a flag the script does not know, or a value of the wrong type,
makes argparse exit 2 with its message. What this proves: the script exists and its command line parses; what it
does not: that the bench runs, or that the figures beside it are what it prints today. `[…]` around optional
arguments (`bench/db.py [--quick]`) is dropped, so the arguments inside are checked too."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"(\.venv/bin/python |`)?bench/(\w+)\.py((?: [^\s`#()|,;]+)*)")
WRAPPER = """
import argparse, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_and_stop(self, args=None, namespace=None):
    parse(self, args, namespace)
    print("parsed")
    sys.exit(0)
argparse.ArgumentParser.parse_args = parse_and_stop
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, str(__import__("pathlib").Path(script).parent))
runpy.run_path(script, run_name="__main__")
print("the script ended without parsing its arguments", file=sys.stderr)
sys.exit(3)
"""
NO_ARGPARSE = {"ceiling_probe", "seccomp_filter"}  # helpers other benches start, with positional arguments


def commands() -> list[tuple[str, str, tuple[str, ...] | None]]:
    """(where, script, arguments) for each distinct command line; arguments None for a mention in prose
    (`bench/x.py` with nothing after it), where only the script's existence is checked."""
    seen: dict[tuple[str, tuple[str, ...] | None], str] = {}
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for m in COMMAND.finditer(line):
                args = tuple(a for a in shlex.split(m.group(3).replace("[", " ").replace("]", " ")) if a != "...")
                if m.group(1) != ".venv/bin/python " and not args:  # a mention, not a command: it exists
                    args = None
                seen.setdefault((m.group(2), args), f"{page.name}:{n}")
    return [(where, script, args) for (script, args), where in sorted(seen.items(), key=repr)]


def test_the_docs_show_bench_commands() -> None:
    cmds = commands()
    assert len(cmds) >= 40 and len({s for _, s, _ in cmds}) >= 25, cmds
    assert sum(args is not None for _, _, args in cmds) >= 30, cmds


@pytest.mark.parametrize(("where", "script", "args"), commands(), ids=lambda v: str(v) if isinstance(v, str) else None)
@pytest.mark.timeout(120)
def test_a_bench_command_of_the_docs_parses(where: str, script: str, args: tuple[str, ...] | None) -> None:
    path = REPO / "bench" / f"{script}.py"
    assert path.is_file(), f"{where}: bench/{script}.py does not exist"
    if args is None or script in NO_ARGPARSE:
        return
    r = subprocess.run([sys.executable, "-c", WRAPPER, str(path), *args], cwd=REPO, capture_output=True, text=True,
                       timeout=100)
    assert r.returncode == 0 and r.stdout.strip().endswith("parsed"), \
        f"{where}: bench/{script}.py {' '.join(args)}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
