"""Package zygotes (SOCK's import cache, across functions; the child side is runtimes/python/pkgzygote.py).

A function zygote (fnzygote.py) makes a revision's *further* starts cheap; a brand-new function still pays for
its packages' import on its first start (numpy: ~60 ms here). A package zygote is a fork of the Python
zygote that imported the packages of one dependency layer — the `deps/SHA` directory a deploy installed from
a `requirements.txt` — and then serves exactly like the Python zygote (pre-forked blanks, each start's own
full sandbox: cgroup, namespaces, mounts, uid, seccomp). A clean start of a Python revision whose layer has
one starts from it: its instance (or its function zygote) finds the packages already in `sys.modules`.

What keeps it safe:

* **Its imports run as the Python zygote's do, outside any sandbox** (the children must still be able to join
  their own cgroup, namespaces and uid). So only layers whose every distribution is on the operator's list
  (`POLYFN_PACKAGE_ZYGOTE_TRUST`), installed from the node's own index (a `requirements.txt` with pip options,
  URLs or paths gets none) have one; the import runs with a clean environment and no function's code, data,
  environment or secrets ever reach the process. A start whose layer does not match exactly (same
  directory: the same `requirements.txt`, installed once) never uses it.
* **Per namespace**: keyed by (namespace, layer); two namespaces with the same layer get two zygotes. Uids are
  per function and applied in each child, as for a clean start, so nothing is shared across uids.
* **Bounded**: the zygotes' RSS together stays under `POLYFN_PACKAGE_ZYGOTE_MEMORY_MB` (idle ones evicted least
  recently used first; one with live children is never killed for room, since they die with it), none is
  built when the node's memory budget has no room, and `POLYFN_PACKAGE_ZYGOTES=false` turns them off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from polyfn.instances.procfs import rss_kb
from polyfn.instances.zygote import ZygoteClient, ZygoteError
from polyfn.protocol.zygote import PackageZygote as PackageZygoteRequest
from polyfn.tenancy import namespace_of

log = logging.getLogger("polyfn.pkgzygote")

#: seconds between a deploy that brings a layer and the build (the deploy's first start comes first)
BUILD_DELAY = 0.25
_NAME = re.compile(r"[-_.]+")
_OPTION = re.compile(r"^\s*-|://|@|^\s*[./~]")  # pip options, URLs, direct references and paths


def normalize(name: str) -> str:
    return _NAME.sub("-", name).lower()


def _metadata_name(dist: Path) -> str:
    try:
        with open(dist / "METADATA", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Name:"):
                    return normalize(line[5:].strip())
                if not line.strip():
                    break
    except OSError:
        pass
    return ""


def _top_level(dist: Path) -> list[str]:
    """The importable top-level names a distribution installed: its top_level.txt, else from its RECORD."""
    try:
        names = (dist / "top_level.txt").read_text().split()
    except OSError:
        try:
            paths = [line.split(",", 1)[0] for line in (dist / "RECORD").read_text().splitlines()]
        except OSError:
            return []
        files = set(paths)
        names = []
        for p in paths:
            top, slash, _ = p.partition("/")
            if slash:
                if f"{top}/__init__.py" in files:
                    names.append(top)
            elif top.endswith((".py", ".so")):
                names.append(top.split(".", 1)[0])
    return sorted({n for n in names if n.isidentifier() and not n.startswith("_")})


def used_modules(code_dir: str, top: set[str], max_files: int = 200, max_bytes: int = 1 << 20) -> list[str]:
    """The modules below `top` (a layer's top-level names) that the code in `code_dir` imports by name (`import
    PIL.Image`, `from sklearn.linear_model import X` → `sklearn.linear_model` and `sklearn.linear_model.X`):
    importing a package does not import its submodules, and Pillow's or scikit-learn's cost is in them. Found by
    parsing the code (never running it); relative imports, and files past the bounds, are skipped."""
    import ast

    found: set[str] = set()
    files = sorted(Path(code_dir).rglob("*.py"))[:max_files] if code_dir else []
    for f in files:
        try:
            if f.stat().st_size > max_bytes:
                continue
            tree = ast.parse(f.read_bytes())
        except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
    return sorted(m for m in found if "." in m and m.split(".", 1)[0] in top
                  and all(p.isidentifier() for p in m.split(".")))


def scan_layer(path: str, trusted: set[str]) -> tuple[list[str], str]:
    """(the top-level modules a package zygote of layer `path` imports, "") or ([], why it gets none)."""
    root = Path(path)
    try:
        reqs = (root / ".requirements.txt").read_text()
    except OSError:
        return [], "the layer's requirements.txt is unknown"
    if any(_OPTION.search(ln) for ln in reqs.splitlines() if ln.strip() and not ln.lstrip().startswith("#")):
        return [], "its requirements.txt has options, URLs or paths (not the node's index)"
    modules: list[str] = []
    dists = sorted(root.glob("*.dist-info"))
    for dist in dists:
        name = _metadata_name(dist)
        if name not in trusted:
            return [], f"distribution {name or dist.name!r} is not in POLYFN_PACKAGE_ZYGOTE_TRUST"
        modules += _top_level(dist)
    if not modules:
        return [], "nothing to import"
    return sorted(set(modules)), ""


class PackageZygote(ZygoteClient):
    """One layer's package zygote: the Python zygote's protocol on the channel it was forked with."""

    def __init__(self, key: tuple[str, str], sock: socket.socket, pid: int, on_exit: Callable[[int, int], None],
                 on_lost: Callable[[PackageZygote], None]):
        super().__init__(f"package {key[0]}:{os.path.basename(key[1])}", Path(os.devnull), self._child_exited)
        self.key = key
        self.pid = pid  # host pid (the Python zygote's child: the host pid namespace)
        self.live: set[int] = set()  # host pids of the processes started from it and not exited yet
        self.modules: list[str] = []
        self.import_ms = 0.0
        self.memory_mb = 0
        self.last_used = time.monotonic()
        self._forward = on_exit
        self._on_lost = on_lost
        self.sock = sock
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def alive(self) -> bool:
        return self.sock is not None

    async def start(self) -> None:
        raise ZygoteError(f"the package zygote {self.runtime} is gone")

    async def wait_ready(self, timeout: float) -> None:
        assert self._ready is not None
        ready = await asyncio.wait_for(self._ready, timeout)
        self.import_ms = ready.preload_ms
        self.memory_mb = max(1, -(-rss_kb(self.pid) // 1024))

    async def spawn(self, spec: msgspec.Struct, conn: socket.socket) -> int:
        pid = await super().spawn(spec, conn)
        self.live.add(pid)
        self.last_used = time.monotonic()
        return pid

    def _child_exited(self, pid: int, status: int) -> None:
        self.live.discard(pid)
        self._forward(pid, status)

    def _lost(self) -> None:
        was = self.sock is not None
        super()._lost()
        if was:
            self.kill()
            self._on_lost(self)

    def kill(self) -> None:
        """End the zygote; what was started from it dies with it (PDEATHSIG): their exits are reported here."""
        if self.sock is not None:
            super()._lost()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)
        for pid in list(self.live):
            self._child_exited(pid, 9)  # (the raw wait status of a SIGKILL)


class PackageZygotes:
    """The node's package zygotes, one per (namespace, dependency layer) at most."""

    def __init__(self, manager: Any):
        self.manager = manager
        s = manager.settings
        self.trusted = {normalize(n) for n in s.package_zygote_trust.split(",") if n.strip()}
        self.cap_mb = s.package_zygote_memory_mb if s.package_zygotes else 0  # (0: none is built)
        self.ready: dict[tuple[str, str], PackageZygote] = {}
        self.building: set[tuple[str, str]] = set()
        self.failed: dict[tuple[str, str], str] = {}  # not retried while the node runs
        self._tasks: set[asyncio.Task[None]] = set()
        self._one: asyncio.Lock | None = None  # one build at a time (a node's start brings every layer at once)

    @staticmethod
    def key_for(rev: Any) -> tuple[str, str] | None:
        if rev.spec.runtime != "python" or not rev.deps_dir:
            return None
        return namespace_of(rev.function), rev.deps_dir

    def get(self, rev: Any) -> PackageZygote | None:
        key = self.key_for(rev)
        pz = self.ready.get(key) if key is not None else None
        return pz if pz is not None and pz.alive else None

    def want(self, rev: Any, delay: float = BUILD_DELAY) -> None:
        """Build the package zygote of `rev`'s layer in the background, once (a deploy brought the layer)."""
        key = self.key_for(rev)
        if key is None or key in self.ready or key in self.building or key in self.failed or self.cap_mb <= 0:
            return
        if self.manager.reserved_mb() + 64 > self.manager.memory_budget_mb:
            return  # never evicts an instance to be built
        self.building.add(key)
        t = asyncio.ensure_future(self._build(key, rev.code_dir, delay))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def spawn(self, rev: Any, spec: msgspec.Struct, conn: socket.socket) -> tuple[int, bool]:
        """A clean start of `rev`: (its pid, whether it came from a package zygote), else from the Python zygote."""
        pz = self.get(rev)
        if pz is not None:
            try:
                return await pz.spawn(spec, conn), True
            except ZygoteError as e:
                log.warning("%s: package zygote failed (%s): starting from the Python zygote", pz.runtime, e)
                self._forget(pz)
        return await self.manager.zygote.spawn(spec, conn), False

    async def _build(self, key: tuple[str, str], code_dir: str, delay: float) -> None:
        pz: PackageZygote | None = None
        self._one = self._one or asyncio.Lock()
        try:
            await asyncio.sleep(delay)
            async with self._one:
                modules, why = await asyncio.to_thread(scan_layer, key[1], self.trusted)
                if why:
                    raise ZygoteError(why)
                self._fit()
                if self.reserved_mb() >= self.cap_mb:  # (not remembered: a later deploy of the layer tries again)
                    log.info("%s: no package zygote now: the others fill POLYFN_PACKAGE_ZYGOTE_MEMORY_MB", key)
                    return
                also = await asyncio.to_thread(used_modules, code_dir, set(modules))
                pz = await self._fork(key, modules, also)
                await pz.wait_ready(max(30.0, self.manager.settings.init_timeout))
        except (ZygoteError, OSError, TimeoutError) as e:
            reason = str(e) or type(e).__name__
            if pz is not None:
                pz.kill()
            self.failed[key] = reason
            log.info("%s: no package zygote: %s", key, reason)
            return
        finally:
            self.building.discard(key)
        if pz is None:
            return
        pz.modules = modules
        self.ready[key] = pz
        self._fit()
        self.release_unused(pz)  # (its functions may have gone during the build)
        if self.ready.get(key) is pz:
            log.info("package zygote for %s:%s ready (%s imported in %.0f ms, %d MB)", key[0], key[1],
                     ", ".join(modules), pz.import_ms, pz.memory_mb)

    async def _fork(self, key: tuple[str, str], modules: list[str], also: list[str]) -> PackageZygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = await self.manager.zygote.request(lambda req: PackageZygoteRequest(req, key[1], modules, also),
                                                    theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return PackageZygote(key, ours, pid, lambda child, status: self._exited(key, child, status), self.lost)

    def _exited(self, key: tuple[str, str], pid: int, status: int) -> None:
        self.manager.exits.on_exit(pid, status)
        pz = self.ready.get(key)
        if pz is not None and pz.alive and not pz.live:  # (the last function of its layer may have gone)
            self.release_unused(pz)

    def release(self, rev: Any, pools: set[Any]) -> None:  # (InstanceManager.forget_pool)
        """`rev` is no longer served: its layer's zygote goes too when no other pool of its namespace uses that
        layer and nothing started from it lives."""
        key = self.key_for(rev)
        pz = self.ready.get(key) if key is not None else None
        if pz is not None:
            self.release_unused(pz, pools)

    def release_unused(self, pz: PackageZygote, pools: set[Any] | None = None) -> None:
        if not pz.live and not any(self.key_for(p.revision) == pz.key for p in (pools or self.manager.pools)):
            log.info("package zygote %s dropped: no function uses its layer", pz.runtime)
            self._forget(pz)

    def _fit(self) -> None:
        """Over the memory cap: evict idle zygotes (nothing started from them lives), least recently used first."""
        for pz in sorted(self.ready.values(), key=lambda z: z.last_used):
            if self.reserved_mb() <= self.cap_mb:
                return
            if not pz.live:
                log.info("package zygote %s evicted (memory cap %d MB)", pz.runtime, self.cap_mb)
                self._forget(pz)

    def _forget(self, pz: PackageZygote) -> None:
        if self.ready.get(pz.key) is pz:
            del self.ready[pz.key]
        pz.kill()

    def lost(self, pz: PackageZygote) -> None:
        if self.ready.get(pz.key) is pz:
            del self.ready[pz.key]
            log.info("package zygote %s lost", pz.runtime)

    def reserved_mb(self) -> int:
        return sum(pz.memory_mb for pz in self.ready.values())

    def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for pz in list(self.ready.values()):
            pz.kill()
        self.ready.clear()
