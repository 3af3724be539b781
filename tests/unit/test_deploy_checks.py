"""Deploy-time safety and checks: archive paths, zip bombs, syntax, handler presence, detection."""

from __future__ import annotations

import io
import zipfile

import pytest

from polyfn.deploy import archive, checks, detect
from polyfn.deploy.errors import DeployError


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", "a\\b", "a\x00b", "."])
def test_unsafe_paths(name: str) -> None:
    with pytest.raises(DeployError) as e:
        archive.safe_relpath(name)
    assert e.value.code == "unsafe_path"


@pytest.mark.parametrize("name,norm", [("a/b.py", "a/b.py"), ("./a.py", "a.py"), ("x", "x")])
def test_safe_paths(name: str, norm: str) -> None:
    assert archive.safe_relpath(name) == norm


def test_zip_bomb_ratio_rejected() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.txt", b"\x00" * (20 * 1024 * 1024))
    with pytest.raises(DeployError) as e:
        archive.files_from_zip(buf.getvalue(), 100 * 1024 * 1024, 100)
    assert e.value.code == "invalid_zip"


def test_zip_size_and_count_limits() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(5):
            zf.writestr(f"f{i}.txt", b"x" * 100)
    with pytest.raises(DeployError) as e:
        archive.files_from_zip(buf.getvalue(), 10_000, 4)
    assert e.value.code == "code_too_large"
    with pytest.raises(DeployError) as e:
        archive.files_from_zip(buf.getvalue(), 300, 100)
    assert e.value.code == "code_too_large"
    assert len(archive.files_from_zip(buf.getvalue(), 10_000, 100)) == 5


def test_digest_ignores_order_and_depends_on_content() -> None:
    a = archive.digest({"a": b"1", "b": b"2"})
    assert a == archive.digest({"b": b"2", "a": b"1"})
    assert a != archive.digest({"a": b"1", "b": b"3"})


def test_materialise_is_read_only_and_removable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = archive.materialise({"h.py": b"x = 1\n", "pkg/m.py": b""}, tmp_path / "code" / "abc")
    assert (dest / "h.py").read_bytes() == b"x = 1\n"
    assert (dest / "h.py").stat().st_mode & 0o222 == 0
    assert archive.materialise({"other": b""}, dest) == dest  # existing dir (same digest) is reused
    archive.remove_tree(dest)
    assert not dest.exists()


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(DeployError) as e:
        checks.check_syntax({"ok.py": b"x = 1\n", "bad.py": b"def f(:\n"})
    assert e.value.code == "syntax_error" and e.value.message.startswith("bad.py:1")


@pytest.mark.parametrize("src,ok", [
    ("def handler(e, c): pass", True),
    ("async def handler(e, c): pass", True),
    ("from lib import handler", True),
    ("handler = make()", True),
    ("def other(e, c): pass", False),
    ("from lib import *", True),
    ("if True:\n    def handler(e, c): pass", True),
])
def test_check_handler(src: str, ok: bool) -> None:
    files = {"main.py": src.encode()}
    if ok:
        checks.check_handler(files, "main.handler")
    else:
        with pytest.raises(DeployError) as e:
            checks.check_handler(files, "main.handler")
        assert e.value.code == "handler_not_found"


def test_check_handler_missing_module_and_packages() -> None:
    with pytest.raises(DeployError) as e:
        checks.check_handler({"a.py": b""}, "b.handler")
    assert e.value.code == "module_not_found"
    checks.check_handler({"pkg/__init__.py": b"def handler(e, c): pass"}, "pkg.handler")
    checks.check_handler({"pkg/mod.py": b"def handler(e, c): pass"}, "pkg.mod.handler")


@pytest.mark.parametrize("files,expected", [
    ({"handler.py": b"def handle(req):\n    return req"}, ("openfaas", "handler.handle")),
    ({"handler.py": b"def handler(event, context):\n    pass"}, ("native", "handler.handler")),
    ({"main.py": b"def handler(e, c): pass", "handler.py": b"def handle(r): pass"}, ("openfaas", "handler.handle")),
    ({"only.py": b"def whatever(event, context): pass\ndef _h(x): pass"}, ("native", "only.whatever")),
])
def test_detection(files: dict[str, bytes], expected: tuple[str, str]) -> None:
    d = detect.detect(files, None, None)
    assert (d.flavor, d.handler) == expected and d.runtime == "python"


def test_detection_failure_lists_what_was_looked_for() -> None:
    with pytest.raises(DeployError) as e:
        detect.detect({"a.py": b"def f(): pass", "b.py": b"X = 1"}, None, None)
    assert e.value.code == "handler_not_found"
    assert "handle" in e.value.message and "--handler" in e.value.message


def test_explicit_handler_infers_flavor_from_arity() -> None:
    assert detect.detect({"x.py": b"def go(req): pass"}, None, "x.go").flavor == "openfaas"
    assert detect.detect({"x.py": b"def go(e, c): pass"}, None, "x.go").flavor == "native"
