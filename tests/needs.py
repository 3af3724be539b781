"""One rule for what a test does when something it needs is missing: skip with the reason on a
developer's machine, fail under `CI=true` (where the README's tools, the services and, as root, every
sandbox layer are expected). Tests ask the kernel or the tool itself, never polyfn's own view of itself."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

CI = os.environ.get("CI") == "true"
ROOT = os.geteuid() == 0


def missing(reason: str) -> NoReturn:
    """Skip (or, under CI=true, fail) the calling test because `reason`."""
    if CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def unless(available: bool, reason: str) -> pytest.MarkDecorator:
    """A mark: skip when not `available`, except under CI=true, where the test runs (and fails)."""
    return pytest.mark.skipif(not available and not CI, reason=reason)
