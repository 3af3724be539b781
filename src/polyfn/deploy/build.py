"""Deploy-time builds for the `node` and `http` runtimes, cached and streamed like pip's installs.

- `npm_install`: a revision's `package.json` dependencies (`npm ci` with a lockfile, else `npm install`)
  into `deps/npm-<hash>/node_modules`, keyed by the hash of package.json + lockfile; instances find them
  through NODE_PATH.
- `go_build`: a Go `package main` into `build/<code hash>/server` (the `@go` handler), with Go build and
  module caches of the build's own. Builds happen once per code hash; a failed build is a deploy error with
  the compiler's output.

Both run in a build sandbox (deploy/isolate.py: a uid of its own, the data dir hidden, a scrubbed
environment, a wall-clock limit), in subprocesses whose output lines are passed to `progress`; the target is
a temp dir sealed (root's, read-only to others) and renamed into place only on success, so a failure leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from polyfn.deploy import isolate
from polyfn.deploy.archive import remove_tree
from polyfn.deploy.errors import DeployError
from polyfn.deploy.isolate import run_streaming

if TYPE_CHECKING:
    from polyfn.deploy.isolate import BuildSandbox

_locks: dict[str, asyncio.Lock] = {}


def needs_npm(files: dict[str, bytes]) -> bool:
    raw = files.get("package.json")
    return bool(raw) and (b'"dependencies"' in raw or b'"optionalDependencies"' in raw)


#: what an npm build leaves in its deps directory (the rest of its inputs, the code, is removed)
NPM_KEPT = {"node_modules", "package.json", "package-lock.json"}
#: what an npm build of a package.json without `file:` dependencies sees of the code (its key covers each)
NPM_INPUTS = {"package.json", ".npmrc"}


async def npm_install(files: dict[str, bytes], deps_root: Path, progress: Callable[[str], None],
                      builds: BuildSandbox) -> str | None:
    pkg = files["package.json"]
    lock = files.get("package-lock.json") or files.get("npm-shrinkwrap.json")
    local = b'"file:' in pkg  # a dependency inside the function's code (`file:./lib`): the code is part of the key
    h = hashlib.sha256(pkg + b"\0" + (lock or b""))
    if local:
        for name in sorted(files):
            h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    elif files.get(".npmrc"):  # the project's npm settings (a registry of its own): part of the key
        h.update(b"\0.npmrc\0" + files[".npmrc"])
    key = "npm-" + h.hexdigest()[:28]
    dest = deps_root / key
    async with _locks.setdefault(key, asyncio.Lock()):
        if (dest / ".complete").exists():
            progress(f"dependencies: using cached npm install {key[4:16]}")
            return str(dest)
        npm = shutil.which("npm")
        if npm is None:
            raise DeployError("dependency_install_failed", "package.json has dependencies but npm is not installed on this node")
        async with builds.workspace(deps_root) as ws:
            # the code too, for a `file:./lib` dependency (--install-links: one outside the project is copied, not
            # symlinked out of the deps dir, which an instance's mount namespace would not show); else only what
            # the key covers: npm keeps a `node_modules` it finds, and the install is shared by every function
            # whose key is the same, so nothing but the key may decide what it holds
            for name, data in files.items():
                if name not in ("package-lock.json", "npm-shrinkwrap.json") and (local or name in NPM_INPUTS):
                    ws.write(name, data, under=ws.out)
            if lock:
                ws.write("package-lock.json", lock, under=ws.out)
            argv = [npm, "ci" if lock else "install", "--omit=dev", "--no-audit", "--no-fund", "--no-progress",
                    "--ignore-scripts", "--install-links"]
            progress(f"dependencies: npm {argv[1]} ({'package-lock.json' if lock else 'package.json'})")
            env = {"npm_config_update_notifier": "false", "npm_config_cache": str(ws.home / ".npm")}
            code, tail = await builds.run(ws, argv, ws.out, env, progress)
            if code != 0:
                raise DeployError("dependency_install_failed", f"npm install failed{isolate.exit_note(code)}:\n"
                                  + "\n".join(tail[-20:]))
            # a `file:./lib` inside the project is linked, not copied, even with --install-links: the code stays
            # (the key covers it); else only what NPM_KEPT names (no function's code in a dir others may share)
            keep = None if local else NPM_KEPT.__contains__
            out = await asyncio.to_thread(ws.finish, "dependency_install_failed", keep)
            isolate.put(out / ".complete", b"ok")
            if dest.exists():
                remove_tree(dest)
            out.rename(dest)
        progress(f"dependencies: installed into {key[4:16]}")
        return str(dest)


async def go_build(files: dict[str, bytes], dest_dir: Path, progress: Callable[[str], None],
                   builds: BuildSandbox) -> Path:
    out = dest_dir / "server"
    async with _locks.setdefault(str(dest_dir), asyncio.Lock()):
        if out.exists():
            progress(f"build: using cached Go build {dest_dir.name[:12]}")
            return out
        go = shutil.which("go")
        if go is None:
            raise DeployError("build_failed", "this is Go code but no Go toolchain is installed on this node "
                              "(install it, e.g. `apt-get install golang-go`, then deploy again)")
        pkgdir = await go_std(go, files, GO_STD_SHARED if os.geteuid() == 0 else dest_dir.parent, progress)
        async with builds.workspace(dest_dir.parent) as ws:
            # Build from a writable copy (the revision's code directory is read-only), with the build's own
            # caches: a Go build cache shared between tenants' builds could be poisoned by one of them. The
            # standard library comes precompiled from `pkgdir` (root's, read-only to the build).
            for name, data in files.items():
                ws.write(name, data)
            if "go.mod" in files:
                targets = ["."]
            else:
                targets = sorted(n for n in files if n.endswith(".go") and "/" not in n and not n.endswith("_test.go"))
            env = {"GOCACHE": str(ws.home / ".cache" / "go-build"), "GOPATH": str(ws.home / "go"),
                   "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GO111MODULE": "on" if "go.mod" in files else "off"}
            progress(f"build: go build ({', '.join(targets)})")
            argv = [go, "build", *(["-pkgdir", str(pkgdir)] if pkgdir else []), "-o", str(ws.out / "server"), *targets]
            code, tail = await builds.run(ws, argv, ws.src, env, progress, ro=[pkgdir] if pkgdir else [])
            if code != 0:
                raise DeployError("build_failed", f"go build failed{isolate.exit_note(code)}:\n" + "\n".join(tail[-20:]))
            done = await asyncio.to_thread(ws.finish, "build_failed")
            if dest_dir.exists():
                remove_tree(dest_dir)
            done.rename(dest_dir)
        progress("build: done")
        return out


#: as root, the precompiled standard library is shared by the host's nodes (root's; only the server writes it)
GO_STD_SHARED = Path("/var/cache/polyfn")
_go_std_lock = asyncio.Lock()
_go_std: dict[str, tuple[str, frozenset[str]]] = {}  # go binary → (its version, its standard library's packages)
_IMPORT_BLOCK = re.compile(rb"^import\s*\(([^)]*)\)", re.M)
_IMPORT_LINE = re.compile(rb'^import\s+(?:[\w.]+\s+)?"([^"]+)"', re.M)
_QUOTED = re.compile(rb'"([^"]+)"')


def imports(files: dict[str, bytes]) -> set[str]:
    """The import paths the `.go` files name (a superset is harmless: only standard packages are kept). Pure."""
    found: set[str] = set()
    for name, data in files.items():
        if name.endswith(".go"):
            for block in _IMPORT_BLOCK.findall(data):
                found.update(q.decode("utf-8", "replace") for q in _QUOTED.findall(block))
            found.update(q.decode("utf-8", "replace") for q in _IMPORT_LINE.findall(data))
    return found


async def go_std(go: str, files: dict[str, bytes], build_root: Path, progress: Callable[[str], None]) -> Path | None:
    """The standard library packages the code imports (with their dependencies), compiled once per host (root:
    `GO_STD_SHARED`, under an flock, as the host's nodes share it; else per data dir) and Go version with
    CGO_ENABLED=0 into `<build_root>/.go-std-<version>` by the server itself: trusted input only (package paths checked against `go list std`, GOPATH off, no
    module), root's and read-only to builds, which load them with `-pkgdir` instead of compiling them again in
    their private caches (~10-20 s for net/http). None when it cannot be made (the build compiles them itself)."""
    async with _go_std_lock:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GO111MODULE": "off", "CGO_ENABLED": "0",
               "GOFLAGS": "", "GOTOOLCHAIN": "local", "GOCACHE": str(build_root / ".go-std-cache"),
               "HOME": str(build_root), **({"GOROOT": os.environ["GOROOT"]} if os.environ.get("GOROOT") else {})}
        try:
            build_root.mkdir(parents=True, exist_ok=True)
        except OSError:  # (a read-only /var/cache: builds compile the standard library themselves)
            return None
        if go not in _go_std:
            code, out = await _quiet([go, "env", "GOVERSION"], build_root, env)
            code2, std = await _quiet([go, "list", "std"], build_root, env)
            if code or code2 or not out:
                return None
            _go_std[go] = (out[0].strip(), frozenset(std))
        version, std = _go_std[go]
        pkgdir = build_root / f".go-std-{re.sub(r'[^A-Za-z0-9._-]', '_', version)}-nocgo"
        wanted = sorted(p for p in imports(files) if p in std and p != "unsafe")
        if not wanted:
            return pkgdir if pkgdir.is_dir() else None
        code, deps = await _quiet([go, "list", "-deps", "-f", "{{if .Standard}}{{.ImportPath}}{{end}}", *wanted],
                                  build_root, env)
        if code:
            return None
        lock = await _flock(build_root / ".go-std.lock")  # (the host's other nodes share GO_STD_SHARED)
        try:
            missing = [p for p in deps if p and p != "unsafe" and not (pkgdir / f"{p}.a").exists()]
            if missing:
                progress(f"build: compiling {len(missing)} standard library package(s) once for this node's builds")
                code, tail = await _quiet([go, "install", "-pkgdir", str(pkgdir), *missing], build_root, env)
                if code:
                    progress("build: could not precompile the standard library: " + " ".join(tail[-3:]))
                for root, dirs, names in os.walk(pkgdir):
                    for n in (*dirs, *names):
                        os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
                if pkgdir.is_dir():
                    pkgdir.chmod(0o755)
        finally:
            os.close(lock)
        return pkgdir if pkgdir.is_dir() else None


async def _flock(path: Path, poll: float = 0.1) -> int:
    """An exclusive flock on `path` (`isolate.try_flock`), waited for without blocking the loop; its descriptor."""
    while (fd := isolate.try_flock(path)) is None:
        await asyncio.sleep(poll)
    return fd


async def _quiet(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(dir=cwd) as tmp:
        code, _ = await run_streaming(argv, cwd, {**env, "TMPDIR": tmp}, lines.append, timeout=1800)
    return code, lines
