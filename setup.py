"""Only what pyproject.toml cannot say: copy the examples and the browser client SDK into the wheel.

They live outside `src/polyfn` in the repository (see `polyfn/bundled.py`); `build_py` copies them to
`polyfn/_bundled/` in the build tree, so every wheel carries them. Editable installs skip the copy and read
the checkout's files.
"""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: name inside polyfn/_bundled -> directory in the repository: one list, the one the package reads
BUNDLES = runpy.run_path(str(ROOT / "src" / "polyfn" / "bundled.py"))["BUNDLES"]
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", ".pytest_cache")


class BuildWithBundles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name, source in BUNDLES.items():
            src = ROOT / source
            if not src.is_dir():
                raise SystemExit(f"setup.py: {source}/ is missing; build from a checkout or an sdist")
            dest = Path(self.build_lib) / "polyfn" / "_bundled" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithBundles})
