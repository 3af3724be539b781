"""Files that live beside the package in the repository and inside it in a wheel.

The examples (`examples/`) and the browser client SDK (`clients/js/src/`) are edited where they belong in the
repository, not under `src/polyfn`. Building a wheel copies them into the package as `polyfn/_bundled/…`
(`setup.py`), so `polyfn serve --examples`, `polyfn examples` and `/sdk/` work from a plain `pip install`. A
checkout (an editable install) has no `_bundled` directory and reads the repository's own files, so an edit
shows up without a rebuild.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "_bundled"
#: the repository root when running from a checkout (src/polyfn/.. /..)
REPO_DIR = PACKAGE_DIR.parents[1]

#: name inside `_bundled` -> path in the repository; setup.py copies exactly these
BUNDLES: dict[str, str] = {
    "examples": "examples",
    "sdk": "clients/js/src",
}


def bundle_dir(name: str) -> Path | None:
    """The directory of bundle `name`: the wheel's copy, else the checkout's; None when neither exists."""
    for candidate in (BUNDLED_DIR / name, REPO_DIR / BUNDLES[name]):
        if candidate.is_dir():
            return candidate
    return None
