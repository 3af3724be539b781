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
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from polyfn.deploy import isolate
from polyfn.deploy.archive import remove_tree
from polyfn.deploy.errors import DeployError

if TYPE_CHECKING:
    from polyfn.deploy.isolate import BuildSandbox

_locks: dict[str, asyncio.Lock] = {}


async def run_streaming(argv: list[str], cwd: Path, env: dict[str, str], progress: Callable[[str], None], *,
                        timeout: float | None = None, pass_fds: tuple[int, ...] = (),
                        started: Callable[[int], None] = lambda _pid: None) -> tuple[int, list[str]]:
    """Run a build tool (pip, npm, go), streaming each output line to `progress`; (exit code, last 40 lines).
    In a session of its own; past `timeout` seconds its whole process group is killed (-9, said in the tail)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL, pass_fds=pass_fds,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    started(proc.pid)
    tail: list[str] = []
    assert proc.stdout is not None

    async def read() -> None:
        async for raw in proc.stdout:  # type: ignore[union-attr]
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                del tail[:-40]
                progress(line)

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        tail.append(f"killed: still running after {timeout:.0f} s (the node's build_timeout)")
        progress(tail[-1])
    except BaseException:
        _kill_group(proc.pid)
        raise
    return await proc.wait(), tail


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def needs_npm(files: dict[str, bytes]) -> bool:
    raw = files.get("package.json")
    return bool(raw) and (b'"dependencies"' in raw or b'"optionalDependencies"' in raw)


#: what an npm build leaves in its deps directory (the rest of its inputs, the code, is removed)
NPM_KEPT = {"node_modules", "package.json", "package-lock.json"}


async def npm_install(files: dict[str, bytes], deps_root: Path, progress: Callable[[str], None],
                      builds: BuildSandbox) -> str | None:
    pkg = files["package.json"]
    lock = files.get("package-lock.json") or files.get("npm-shrinkwrap.json")
    h = hashlib.sha256(pkg + b"\0" + (lock or b""))
    if b'"file:' in pkg:  # a dependency inside the function's code (`file:./lib`): the code is part of the key
        for name in sorted(files):
            h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
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
            # symlinked out of the deps dir, which an instance's mount namespace would not show)
            for name, data in files.items():
                if name not in ("package-lock.json", "npm-shrinkwrap.json"):
                    ws.write(name, data, under=ws.out)
            if lock:
                ws.write("package-lock.json", lock, under=ws.out)
            argv = [npm, "ci" if lock else "install", "--omit=dev", "--no-audit", "--no-fund", "--no-progress",
                    "--ignore-scripts", "--install-links"]
            progress(f"dependencies: npm {argv[1]} ({'package-lock.json' if lock else 'package.json'})")
            env = {"npm_config_update_notifier": "false", "npm_config_cache": str(ws.home / ".npm")}
            code, tail = await builds.run(ws, argv, ws.out, env, progress)
            if code != 0:
                raise DeployError("dependency_install_failed", "npm install failed:\n" + "\n".join(tail[-20:]))
            # a `file:./lib` inside the project is linked, not copied, even with --install-links: the code stays
            # (the key covers it); else only what NPM_KEPT names (no function's code in a dir others may share)
            keep = None if b'"file:' in pkg else NPM_KEPT.__contains__
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
        async with builds.workspace(dest_dir.parent) as ws:
            # Build from a writable copy (the revision's code directory is read-only), with the build's own
            # caches: a Go build cache shared between tenants' builds could be poisoned by one of them.
            for name, data in files.items():
                ws.write(name, data)
            if "go.mod" in files:
                targets = ["."]
            else:
                targets = sorted(n for n in files if n.endswith(".go") and "/" not in n and not n.endswith("_test.go"))
            env = {"GOCACHE": str(ws.home / ".cache" / "go-build"), "GOPATH": str(ws.home / "go"),
                   "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GO111MODULE": "on" if "go.mod" in files else "off"}
            progress(f"build: go build ({', '.join(targets)})")
            code, tail = await builds.run(ws, [go, "build", "-o", str(ws.out / "server"), *targets], ws.src, env,
                                          progress)
            if code != 0:
                raise DeployError("build_failed", "go build failed:\n" + "\n".join(tail[-20:]))
            done = await asyncio.to_thread(ws.finish, "build_failed")
            if dest_dir.exists():
                remove_tree(dest_dir)
            done.rename(dest_dir)
        progress("build: done")
        return out
