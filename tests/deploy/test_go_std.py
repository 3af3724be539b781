"""The Go standard library precompiled for builds (deploy/build.py `go_std`): two nodes of one host share its
directory (/var/cache/polyfn as root), so the first compile is done by one of them while the other waits, then
finds it made. Real processes: two interpreters calling `go_std` at once on a fresh directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("go") is None and os.environ.get("CI") != "true",
                                reason="no Go toolchain (apt-get install golang-go)")

NODE = '''
import asyncio, shutil, sys
from pathlib import Path
from polyfn.deploy.build import go_std
files = {"main.go": b'package main\\nimport ("fmt"; "strings")\\nfunc main() { fmt.Println(strings.ToUpper("x")) }\\n'}
lines = []
out = asyncio.run(go_std(shutil.which("go"), files, Path(sys.argv[1]), lines.append))
print("compiled" if any("compiling" in ln for ln in lines) else "found", out is not None and (out / "fmt.a").exists())
'''


def test_two_nodes_compile_the_standard_library_once(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", NODE, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = sorted(p.communicate(timeout=600)[0].strip() for p in procs)
    assert outs == ["compiled True", "found True"], outs
