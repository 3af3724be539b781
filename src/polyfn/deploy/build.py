"""Deploy-time builds for the `node` and `http` runtimes, cached and streamed like pip's installs.

- `npm_install`: a revision's `package.json` dependencies (`npm ci` with a lockfile, else `npm install`)
  into `deps/npm-<hash>/node_modules`, keyed by the hash of package.json + lockfile; instances find them
  through NODE_PATH.
- `go_build`: a Go `package main` into `build/<code hash>/server` (the `@go` handler), with the Go build
  cache in the data dir. Builds happen once per code hash; a failed build is a deploy error with the
  compiler's output.

Both run in subprocesses whose output lines are passed to `progress`; the target is a temp dir renamed
into place only on success, so a failure leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from polyfn.deploy.archive import remove_tree
from polyfn.deploy.errors import DeployError

_locks: dict[str, asyncio.Lock] = {}


async def run_streaming(argv: list[str], cwd: Path, env: dict[str, str],
                        progress: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run a build tool (pip, npm, go), streaming each output line to `progress`; (exit code, last 40 lines)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    tail: list[str] = []
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)
            del tail[:-40]
            progress(line)
    return await proc.wait(), tail


def needs_npm(files: dict[str, bytes]) -> bool:
    raw = files.get("package.json")
    return bool(raw) and (b'"dependencies"' in raw or b'"optionalDependencies"' in raw)


async def npm_install(files: dict[str, bytes], deps_root: Path, progress: Callable[[str], None]) -> str | None:
    pkg = files["package.json"]
    lock = files.get("package-lock.json") or files.get("npm-shrinkwrap.json")
    key = "npm-" + hashlib.sha256(pkg + b"\0" + (lock or b"")).hexdigest()[:28]
    dest = deps_root / key
    async with _locks.setdefault(key, asyncio.Lock()):
        if (dest / ".complete").exists():
            progress(f"dependencies: using cached npm install {key[4:16]}")
            return str(dest)
        npm = shutil.which("npm")
        if npm is None:
            raise DeployError("dependency_install_failed", "package.json has dependencies but npm is not installed on this node")
        deps_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=deps_root))
        tmp.chmod(0o755)  # mkdtemp makes it 0700: the instance runs as a per-function uid
        (tmp / "package.json").write_bytes(pkg)
        if lock:
            (tmp / "package-lock.json").write_bytes(lock)
        # --install-links: `file:` dependencies are copied, not symlinked out of the deps dir (an instance's
        # mount namespace shows it only its own code and deps, so a link to elsewhere would dangle).
        argv = [npm, "ci" if lock else "install", "--omit=dev", "--no-audit", "--no-fund", "--no-progress",
                "--ignore-scripts", "--install-links"]
        progress(f"dependencies: npm {argv[1]} ({'package-lock.json' if lock else 'package.json'})")
        env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_cache": str(deps_root / ".npm-cache")}
        code, tail = await run_streaming(argv, tmp, env, progress)
        if code != 0:
            remove_tree(tmp)
            raise DeployError("dependency_install_failed", "npm install failed:\n" + "\n".join(tail[-20:]))
        (tmp / ".complete").write_text("ok")
        if dest.exists():
            remove_tree(dest)
        tmp.rename(dest)
        progress(f"dependencies: installed into {key[4:16]}")
        return str(dest)


async def go_build(code_dir: Path, files: dict[str, bytes], dest_dir: Path, cache_root: Path,
                   progress: Callable[[str], None]) -> Path:
    out = dest_dir / "server"
    async with _locks.setdefault(str(dest_dir), asyncio.Lock()):
        if out.exists():
            progress(f"build: using cached Go build {dest_dir.name[:12]}")
            return out
        go = shutil.which("go")
        if go is None:
            raise DeployError("build_failed", "this is Go code but no Go toolchain is installed on this node "
                              "(install it, e.g. `apt-get install golang-go`, then deploy again)")
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest_dir.parent))
        tmp.chmod(0o755)  # mkdtemp makes it 0700: the instance runs as a per-function uid
        # Build from a writable copy: the revision's code directory is read-only.
        src = tmp / "src"
        shutil.copytree(code_dir, src)
        for root, dirs, _ in os.walk(src):
            os.chmod(root, 0o755)
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        if "go.mod" in files:
            targets = ["."]
        else:
            targets = sorted(n for n in files if n.endswith(".go") and "/" not in n and not n.endswith("_test.go"))
        env = {**os.environ, "GOCACHE": str(cache_root / "go-build"), "GOPATH": str(cache_root / "gopath"),
               "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GO111MODULE": "on" if "go.mod" in files else "off"}
        progress(f"build: go build ({', '.join(targets)})")
        code, tail = await run_streaming([go, "build", "-o", str(tmp / "server"), *targets], src, env, progress)
        if code != 0:
            remove_tree(tmp)
            raise DeployError("build_failed", "go build failed:\n" + "\n".join(tail[-20:]))
        remove_tree(src)
        if dest_dir.exists():
            remove_tree(dest_dir)
        tmp.rename(dest_dir)
        progress("build: done")
        return out
