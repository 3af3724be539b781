"""Install a revision's `requirements.txt` into a site directory of its own, cached by the file's hash.

pip runs in a subprocess with the server's interpreter (so compiled wheels match the instances); its output
is streamed to the caller line by line for progress. A failed install raises DeployError with pip's tail,
and nothing is left behind: the target is a temp dir renamed into place only on success.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from polyfn.deploy.archive import remove_tree
from polyfn.deploy.build import run_streaming
from polyfn.deploy.errors import DeployError

_locks: dict[str, asyncio.Lock] = {}


async def install(requirements: bytes, deps_root: Path, progress: Callable[[str], None]) -> str | None:
    lines = [ln.strip() for ln in requirements.decode("utf-8", "replace").splitlines()]
    if not any(ln and not ln.startswith("#") for ln in lines):
        return None
    key = hashlib.sha256(requirements).hexdigest()[:32]
    dest = deps_root / key
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        if (dest / ".complete").exists():
            progress(f"dependencies: using cached install {key[:12]}")
            return str(dest)
        deps_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=deps_root))
        req_file = tmp / ".requirements.txt"
        req_file.write_bytes(requirements)
        progress("dependencies: pip install -r requirements.txt")
        argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                "--progress-bar", "off", "--target", str(tmp), "-r", str(req_file)]
        code, tail = await run_streaming(argv, tmp, dict(os.environ), progress)
        if code != 0:
            remove_tree(tmp)
            raise DeployError("dependency_install_failed", "pip install failed:\n" + "\n".join(tail[-20:]))
        (tmp / ".complete").write_text("ok")
        tmp.chmod(0o755)  # mkdtemp makes it 0700: the instance runs as a per-function uid
        if dest.exists():
            remove_tree(dest)
        tmp.rename(dest)
        progress(f"dependencies: installed into {key[:12]}")
        return str(dest)
