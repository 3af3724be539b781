"""The shared doc-block runner (tests/e2e/docblocks.py) on small pages of its own: what it runs, writes and
skips, and that a wrong output, a failing command, an unknown language or a stale rewrite fails the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .docblocks import blocks, run_page

PAGE = '''# A page

```python file=app/hello.py
print("hello from a file")
```

```sh
python3 app/hello.py        # -> hello from a file
echo "id 42"; echo done     # -> id …
```

<!-- not run: a fragment -->
```python
return 1
```

```text
shown output, not run
```
'''


def _run(tmp_path: Path, text: str, **kw: object) -> list[str]:
    doc = tmp_path / "page.md"
    doc.write_text(text)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return [r.stdout for _, r in run_page(doc, work, dict(os.environ), **kw)]  # type: ignore[arg-type]


def test_files_are_written_blocks_run_and_marked_blocks_are_skipped(tmp_path: Path) -> None:
    assert [b.kind for b in blocks(PAGE)] == ["file", "sh", "not run", "shown"]
    assert blocks(PAGE)[2].not_run == "a fragment"
    assert _run(tmp_path, PAGE, expect="arrow") == ["hello from a file\nid 42\ndone\n"]


@pytest.mark.parametrize(("change", "message"), [
    (("# -> hello from a file", "# -> hello from a fil"), "expected output 'hello from a fil' not printed"),
    (("# -> id …", "# -> done …"), "expected output 'done …' not printed"),
    (("echo done", "false"), "block failed (1)"),
    (('print("hello from a file")', "import sys; sys.exit(3)"), "block failed"),
    (("```text", "```ruby"), "the runner knows no such language"),
    (("echo done", "echo $UNSET_VARIABLE_OF_NOBODY"), "block failed"),  # set -u
    (("echo done", "false | cat"), "block failed"),  # pipefail
])
def test_a_wrong_page_fails(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(tmp_path, PAGE.replace(*change), expect="arrow")


def test_comment_mode_takes_every_trailing_comment_and_not_a_comment_line(tmp_path: Path) -> None:
    page = "```sh\n# a line comment is no output\necho one   # one\necho two   # two\n```\n"
    assert _run(tmp_path, page) == ["one\ntwo\n"]
    with pytest.raises(AssertionError, match="expected output 'two' not printed"):
        _run(tmp_path, page.replace("echo two", "echo three"))


def test_rewrites_apply_and_a_stale_one_fails(tmp_path: Path) -> None:
    page = "```sh\necho live view   # -> bounded\n```\n"
    assert _run(tmp_path, page, expect="arrow", rewrites=[(r"^echo live view", "echo bounded")]) == ["bounded\n"]
    with pytest.raises(AssertionError, match="rewrites that match no block"):
        _run(tmp_path, page.replace("live view", "bounded"), expect="arrow", rewrites=[(r"^echo live view", "x")])
