"""What `deploy` ships of a directory: the files worth shipping, zipped reproducibly (the same tree always gives
the same archive bytes), executable bits kept."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path

#: Directory names never worth shipping: VCS data, caches, local virtualenvs, JS dependencies
#: (the server installs dependencies itself from requirements.txt / package.json).
SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", "node_modules"})
SKIP_SUFFIXES = (".pyc",)
#: Fixed zip timestamp so that the same tree always gives the same archive bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def iter_tree(root: Path) -> Iterable[tuple[Path, str]]:
    """Files under `root` to ship, as (path, archive name), sorted so archives are reproducible."""
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
        for name in sorted(names):
            if name.endswith(SKIP_SUFFIXES):
                continue
            path = Path(directory) / name
            yield path, path.relative_to(root).as_posix()


def zip_directory(root: Path) -> tuple[bytes, int]:
    """Zip `root` in memory; keep the executable bit (the `http` runtime runs a binary)."""
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, arcname in iter_tree(root):
            if not path.is_file():  # sockets, broken symlinks ...
                continue
            info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(info, path.read_bytes())
            count += 1
    return buffer.getvalue(), count
