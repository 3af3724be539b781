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
    """The requirements' hash, and the code's too when pip may read a file of the code (`names_local`): the
    install is shared by every function whose key is the same, so nothing but the key may decide what it holds."""
    h = hashlib.sha256(requirements)
    if names_local(requirements):
        for name in sorted(files):
            h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:32]


#: options that read no file (the others — `-r`, `-c`, `-f`, `-e`, an index that is not http(s) … — may read the code's)
_NO_FILE_OPTIONS = frozenset({"--pre", "--prefer-binary", "--only-binary", "--no-binary", "--trusted-host",
                              "--require-hashes"})
_INDEX_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url"})
_ARCHIVE = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar")


def names_local(requirements: bytes) -> bool:
    """Whether a line may make pip read a file of the code (in whose copy it runs): a path (`./pkg`, `pkg/`,
    `x.whl`, `file:`), `-e .`, a requirements or constraints file (`-r base.txt`), `--find-links wheels`, an
    index that is not an http(s) URL, an option pip knows and this does not. Conservative: a false "yes" only
    keys the install by the code too. Pure."""
    for raw in requirements.decode("utf-8", "replace").splitlines():
        ln = raw.split(" #", 1)[0].strip()
        if not ln or ln.startswith("#"):
            continue
        if ln.startswith("-"):
            opt, _, value = ln.replace("=", " ", 1).partition(" ")
            value = value.strip()
            if opt in _NO_FILE_OPTIONS or (opt in _INDEX_OPTIONS and value.startswith(("https://", "http://"))):
                continue
            return True
        spec = ln.split(";", 1)[0].strip()
        if "@" in spec:  # `name @ URL`: a URL of the internet reads no file of the code
            if not spec.split("@", 1)[1].strip().startswith(("https://", "http://", "git+https://")):
                return True
            continue
        if spec.startswith((".", "/", "~")) or "/" in spec or "\\" in spec or spec.lower().endswith(_ARCHIVE) or "file:" in spec:
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
            # -I: the code's directory (pip's cwd, for `./pkg` lines) is not on sys.path, so a `pip/` of the code
            # is not the pip that runs (it could put anything under the requirements' names: the layer other
            # functions with the same requirements.txt share, and a package zygote imports as root)
            argv = [sys.executable, "-I", "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
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
