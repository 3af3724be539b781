"""Runs a doc page's code blocks, in order, in one working directory, against a real node: the one runner behind
every "the docs run as written" test (docs/apps.md, workflows.md, streaming.md, usage.md, database.md, …).

The page's conventions:

* a block is a fenced block (```` ```LANG ````); indented blocks are prose and never run;
* a block is written to a file, not run, when its info string says ```` ```LANG file=PATH ```` or its first
  line is `// file: PATH`, `# file: PATH` or `<!-- file: PATH -->`;
* `sh`/`bash` blocks run in bash with `set -euo pipefail`, `python` blocks with this interpreter, `js` blocks
  (when the test gives a `js` directory) as ES modules under Node; `text`, `json`, `console` and unlabelled
  blocks are shown output, data or diagrams and never run;
* a block after `<!-- not run: REASON -->` (the last non-blank line before its fence) is not run: the page
  says why, visibly;
* expected output: with `expect="comment"` every trailing `# …` comment of an sh line (and `// …` after
  `console.log(…);` in js) is a line the block must print, in that order; with `expect="arrow"` only trailing
  `# -> …` comments are (so other trailing comments can explain). Each is compared with a whole printed line
  (stripped; `…` in it stands for any text, such as an id), and they must come in the order the block gives
  them.

A test iterates `run_page(...)`: the runner asserts each block's exit status and expected output, and yields
the block with its result so the test can check more."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)(?:[ \t]+file=(\S+))?[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"^(?://|#|<!--)\s*file:\s*(\S+?)\s*(?:-->)?$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")
RUN = {"sh": "sh", "bash": "sh", "python": "python", "js": "js"}
SHOWN = {"", "text", "json", "console"}


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    file: str | None = None  # written to this path instead of run
    not_run: str | None = None  # the page's reason

    @property
    def kind(self) -> str:
        """"file", "not run", "shown" (data, output, diagrams) or what runs it: "sh", "python", "js"."""
        if self.file is not None:
            return "file"
        if self.not_run is not None:
            return "not run"
        if self.lang in SHOWN:
            return "shown"
        if self.lang not in RUN:
            raise AssertionError(f"line {self.line}: a {self.lang!r} block: the runner knows no such language")
        return RUN[self.lang]


def blocks(text: str) -> list[Block]:
    out = []
    for m in FENCE.finditer(text):
        lang, file, code = m.group(1), m.group(2), m.group(3)
        first = code.splitlines()[0] if code.strip() else ""
        marker = MARKER.match(first)
        if file is None and marker:
            file = marker.group(1)
        before = [ln.strip() for ln in text[:m.start()].splitlines() if ln.strip()]
        not_run = NOT_RUN.match(before[-1]) if before else None
        out.append(Block(lang, code, text.count("\n", 0, m.start()) + 1, file, not_run.group(1) if not_run else None))
    return out


def expected_output(block: Block, expect: str = "comment") -> list[str]:
    if expect == "arrow":
        if block.kind != "sh":
            return []
        return [m.group(1).strip() for m in re.finditer(r"^[^#\n]*\S[ \t]+#[ \t]*->[ \t]*(.+)$", block.code, re.M)]
    if block.kind == "js":
        return [m.group(1).strip() for m in re.finditer(r"console\.log\(.*\);\s*//\s*(.+)$", block.code, re.M)]
    if block.kind == "sh":
        return [m.group(1).strip() for m in re.finditer(r"^[^#\n]*\S[ \t]+#[ \t]*(.+)$", block.code, re.M)]
    return []


def _matches(want: str, line: str) -> bool:
    if "…" not in want:
        return line == want
    return re.fullmatch(".+".join(re.escape(part) for part in want.split("…")), line) is not None


def assert_printed_in_order(want: Sequence[str], printed: str, block: Block, doc: Path) -> None:
    it = iter(line.strip() for line in printed.splitlines())
    for w in want:
        assert any(_matches(w, line) for line in it), \
            f"{doc.name}:{block.line}: expected output {w!r} not printed (in order) by:\n{block.code}\n--- got:\n" \
            f"{printed}"


def doc_env(url: str, *, key: str | None = None, data_dir: Path | None = None) -> dict[str, str]:
    """The environment a reader has: `polyfn` on PATH, POLYFN_URL, and either the API key or the data dir
    (the CLI then reads admin.key from it); no AWS profile of the machine's."""
    env = {**os.environ, "POLYFN_URL": url, "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for k in ("POLYFN_API_KEY", "POLYFN_DATA_DIR", "AWS_PROFILE"):
        env.pop(k, None)
    if key is not None:
        env["POLYFN_API_KEY"] = key
    if data_dir is not None:
        env["POLYFN_DATA_DIR"] = str(data_dir)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
    return env


def run_page(doc: Path, cwd: Path, env: dict[str, str], *, expect: str = "comment",
             rewrites: Sequence[tuple[str, str]] = (), js_dir: Path | None = None, js_prelude: str = "",
             timeout: float = 300, only: Callable[[Block], bool] | None = None,
             ) -> Iterator[tuple[Block, subprocess.CompletedProcess[str]]]:
    """Write the page's file blocks into `cwd` and run its other blocks there, in order; yield each block that
    ran with its result (after asserting exit 0 and the expected output). `rewrites` are (regex, replacement)
    applied to a block's code before it runs: each is what a line needs to run unattended (a bound on a live
    view), listed in the test so it cannot drift from the page silently; a rewrite that matches nowhere fails.
    `only`: the blocks this test owns (a page whose sections other tests run); the others are neither written
    nor run."""
    used = [False] * len(rewrites)
    for i, block in enumerate(blocks(doc.read_text())):
        if only is not None and not only(block):
            continue
        kind = block.kind
        if kind == "file":
            path = cwd / block.file  # type: ignore[operator]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code)
            continue
        if kind in ("not run", "shown"):
            continue
        code = block.code
        for j, (pattern, repl) in enumerate(rewrites):
            code, n = re.subn(pattern, repl, code, flags=re.M)
            used[j] = used[j] or n > 0
        if kind == "sh":
            r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + code], cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=timeout)
        elif kind == "python":
            r = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=timeout)
        else:
            assert js_dir is not None, f"{doc.name}:{block.line}: a js block, and the test gave no js directory"
            script = js_dir / f".doctest-{os.getpid()}-{i}.mjs"
            script.write_text(js_prelude + code + "\nprocess.exit(0);\n")
            try:
                r = subprocess.run(["node", script.name], cwd=js_dir, env=env, capture_output=True, text=True,
                                   timeout=timeout)
            finally:
                script.unlink()
        assert r.returncode == 0, f"{doc.name}:{block.line}: this {block.lang} block failed ({r.returncode}):\n" \
                                  f"{code}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"
        assert_printed_in_order(expected_output(block, expect), r.stdout, block, doc)
        yield block, r
    unused = [rewrites[j][0] for j, u in enumerate(used) if not u]
    assert not unused, f"{doc.name}: rewrites that match no block any more: {unused}"
