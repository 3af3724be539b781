"""Which requirements.txt let pip read a file of the function's code (deploy/deps.py): then the code is part of
the install's cache key, since an install is shared by every function whose key is the same."""

from __future__ import annotations

import pytest

from polyfn.deploy.deps import cache_key, names_local


@pytest.mark.parametrize(("requirements", "local"), [
    ("six\nrequests==2.31.0\n", False),
    ("numpy>=1.26 ; python_version >= '3.11'  # a comment\n", False),
    ("six==1.16.0 --hash=sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926\n", False),
    ("--index-url https://pypi.example.com/simple\n--pre\n--only-binary :all:\nsix\n", False),
    ("pkg @ https://example.com/pkg-1.0.tar.gz\n", False),
    ("./mypkg\n", True),
    ("-e .\n", True),
    ("mypkg/\n", True),
    ("wheels/six-1.16.0-py2.py3-none-any.whl\n", True),
    ("six-1.16.0.tar.gz\n", True),
    ("-r base.txt\n", True),
    ("--requirement=base.txt\n", True),
    ("-c constraints.txt\nsix\n", True),
    ("-f wheels\nsix\n", True),
    ("--find-links=./wheels\nsix\n", True),
    ("--no-index\nsix\n", True),  # (not known to read nothing: keyed by the code too, conservatively)
    ("-i ./simple\nsix\n", True),
    ("--extra-index-url file:///opt/pypi/simple\nsix\n", True),
    ("pkg @ file:///srv/pkg\n", True),
])
def test_names_local(requirements: str, local: bool) -> None:
    assert names_local(requirements.encode()) is local


def test_the_code_is_in_the_key_only_when_pip_may_read_it() -> None:
    a, b = {"handler.py": b"a"}, {"handler.py": b"b"}
    assert cache_key(b"six\n", a) == cache_key(b"six\n", b)
    assert cache_key(b"-r base.txt\n", a) != cache_key(b"-r base.txt\n", b)
