"""Install a revision's `requirements.txt` into a site directory of its own, cached by the file's hash.

pip runs in a subprocess with the server's interpreter (so compiled wheels match the instances), in a build
sandbox (deploy/isolate.py: a uid of its own, the data dir hidden, a scrubbed environment); its output is
streamed to the caller line by line for progress. It runs in a copy of the function's code, so a local
package (`./mypkg` in requirements.txt) installs too; then the cache key covers the code as well. A failed
install raises DeployError with pip's tail, and nothing is left behind: the target is a temp dir renamed into
place only on success, sealed first (root's, read-only to others).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

from polyfn.deploy import isolate
from polyfn.deploy.archive import remove_tree
from polyfn.deploy.errors import DeployError
from polyfn.deploy.isolate import BuildSandbox, put

_locks: dict[str, asyncio.Lock] = {}


def cache_key(requirements: bytes, files: dict[str, bytes]) -> str:
    """The requirements' hash, and the code's too when a line names a local path (`./pkg`, `-e .`, `file:`)."""
    h = hashlib.sha256(requirements)
    if _names_local(requirements):
        for name in sorted(files):
            h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:32]


def _names_local(requirements: bytes) -> bool:
    for raw in requirements.decode("utf-8", "replace").splitlines():
        ln = raw.strip().removeprefix("-e").removeprefix("--editable").strip()
        if ln.startswith((".", "/", "file:")) or ("@" in ln and "file:" in ln):
            return True
    return False


async def install(requirements: bytes, deps_root: Path, progress: Callable[[str], None],
                  builds: BuildSandbox, files: dict[str, bytes] | None = None) -> str | None:
    lines = [ln.strip() for ln in requirements.decode("utf-8", "replace").splitlines()]
    if not any(ln and not ln.startswith("#") for ln in lines):
        return None
    files = files or {}
    key = cache_key(requirements, files)
    dest = deps_root / key
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        if (dest / ".complete").exists():
            progress(f"dependencies: using cached install {key[:12]}")
            return str(dest)
        async with builds.workspace(deps_root) as ws:
            for name, data in files.items():
                ws.write(name, data)
            req_file = ws.write(".requirements.txt", requirements)
            progress("dependencies: pip install -r requirements.txt")
            argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                    "--progress-bar", "off", "--target", str(ws.out), "-r", str(req_file)]
            code, tail = await builds.run(ws, argv, ws.src, {}, progress)
            if code != 0:
                raise DeployError("dependency_install_failed", f"pip install failed{isolate.exit_note(code)}:\n"
                                  + "\n".join(tail[-20:]))
            out = await asyncio.to_thread(ws.finish, "dependency_install_failed")
            put(out / ".requirements.txt", requirements)  # (what package zygotes read: instances/pkgzygote.py)
            put(out / ".complete", b"ok")
            if dest.exists():
                remove_tree(dest)
            out.rename(dest)
        progress(f"dependencies: installed into {key[:12]}")
        return str(dest)
