"""The instance's root filesystem: a fresh tree of read-only bind mounts, entered with `pivot_root`.

Nothing of the host is visible unless it is listed here: the operating system's program and library
directories (`/usr`, `/lib*`, `/bin`, `/sbin` — the dynamic linker and the shared libraries any runtime or
`http` binary needs; `/usr/local` is covered), the interpreter's own prefix (wherever it lives: pyenv under
a 0700 `/root` included, and only that directory of it), the packages the runtime provides (one shared,
read-only copy: boto3 and what polyfn's Python runtime itself needs, never polyfn's server environment),
the function's code and dependencies, a private `/tmp`, `/proc` of the instance's pid namespace, a few
`/dev` nodes and a minimal `/etc` (passwd and group naming the function's uid, hosts, resolv.conf, CA
certificates, localtime). Every path keeps its host name, so modules already imported by the zygote keep
finding their files.

Server side (`layout`, `python_paths`, `etc_files`): which paths, decided once and carried in the
`SandboxPlan`. Child side (`enter`): the mounts and the pivot, in the instance's own mount namespace,
before the uid drop and seccomp.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Sequence

from polyfn.sandbox import linux

_NOSUID_NODEV = linux.MS_NOSUID | linux.MS_NODEV
#: the operating system's directories every runtime may use (merged-/usr hosts have /bin etc. as symlinks)
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: host directories under a SYSTEM one that stay hidden (the machine's own tools: docker, local installs)
MASKED = ("/usr/local",)
#: /etc entries bound from the host when present (CA certificates, Mono's machine.config, Debian's alternatives
#: — libblas.so.3 that ffmpeg and numpy load is a link through them — and the dynamic linker's cache); the
#: rest is generated
ETC_BINDS = ("/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/ca-certificates.conf", "/etc/mono",
             "/etc/alternatives", "/etc/ld.so.cache")
DEV_NODES = ("null", "zero", "full", "random", "urandom")
#: the distributions the Python runtime provides to every function, besides its own needs (Lambda-style)
PROVIDED_PY = ("boto3",)
#: what polyfn's Python runtime imports itself (frames, event loop, the vendor flavors' libraries; the http
#: runtime's proxy: websockets' sans-I/O client for a WebSocket passed through, runtimes/http/wsrelay.py)
RUNTIME_PY = ("msgspec", "uvloop", "functions-framework", "azure-functions", "cloudevents", "websockets")
#: requirements of RUNTIME_PY left out of the instance's root: functions-framework's own HTTP servers (its CLI
#: serves with gunicorn, uvicorn for ASGI, watchdog to reload), which a function on polyfn never runs — the
#: flavor calls the registered function itself. A function that wants one ships it in its requirements.
HIDDEN_PY = ("gunicorn", "uvicorn", "uvicorn-worker", "watchdog")


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def distribution_closure(names: Iterable[str], hidden: Iterable[str] = ()) -> list[object]:
    """The installed distributions `names` and everything they require (extras left out), but `hidden`
    ones and what only they require."""
    from importlib import metadata

    seen: dict[str, object] = {}
    skip = {_norm(n) for n in hidden}
    todo = list(names)
    while todo:
        name = _norm(todo.pop())
        if name in seen or name in skip:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if "extra" in marker:
                continue
            base = spec.strip().split("[")[0]
            for stop in "<>=!~ (":
                base = base.split(stop)[0]
            if base:
                todo.append(base)
    return list(seen.values())


def distribution_paths(dists: Iterable[object], metadata: bool = True) -> list[str]:
    """The top-level modules and packages of `dists` in their site-packages (inside a namespace package such
    as `google/`, only the distribution's own subpackage), and with `metadata` their .dist-info."""
    out: set[str] = set()
    for dist in dists:
        files = getattr(dist, "files", None) or []
        for f in files:
            parts = f.parts  # type: ignore[attr-defined]
            if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(".pth"):
                continue
            if parts[0].endswith(".dist-info") and not metadata:
                continue
            for k in range(1, len(parts) + 1):  # descend through namespace packages (no __init__.py)
                path = str(dist.locate_file("/".join(parts[:k])))  # type: ignore[attr-defined]
                if not os.path.isdir(path) or os.path.exists(os.path.join(path, "__init__.py")) or \
                        parts[0].endswith((".dist-info", ".data")) or k == len(parts):
                    break
            if os.path.exists(path):
                out.add(os.path.realpath(path))
    return sorted(out)


def metadata_copy(dists: Iterable[object], into: str) -> None:
    """`into`, made afresh: a copy of each of `dists`' .dist-info directories (without RECORD, which would
    name files relative to the copy), readable by every uid. On an instance's import path it lets
    importlib.metadata know packages bound without their metadata (`flask.__version__`,
    `importlib.metadata.version("click")`) for one mount, where a bind per .dist-info would add one each."""
    import shutil

    tmp = into.rstrip("/") + ".new"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o755)
    for info in (p for p in distribution_paths(dists) if p.endswith(".dist-info")):
        dst = os.path.join(tmp, os.path.basename(info))
        shutil.copytree(info, dst, ignore=shutil.ignore_patterns("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"))
        for d, _, files in os.walk(dst):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
    shutil.rmtree(into, ignore_errors=True)
    os.rename(tmp, into)


def python_paths(metadata_dir: str = "") -> tuple[list[str], list[str]]:
    """(paths to bind, sys.path an instance gets after its own entries): the interpreter's prefix and
    standard library, and the provided distributions' files — never polyfn's server environment. The
    provided distributions (boto3's) are bound with their metadata; the runtime's own (msgspec, Flask for
    functions-framework …) are bound one mount per package, their metadata copied into `metadata_dir` (when
    given), which is bound and put last on the import path."""
    binds: set[str] = set()
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        binds.add(os.path.realpath(prefix))
    exe = sys.executable
    if exe:
        binds.add(os.path.realpath(exe))
        binds.add(exe)  # a venv's bin/python symlink (subprocesses started with sys.executable)
        cfg = os.path.join(sys.prefix, "pyvenv.cfg")
        if os.path.exists(cfg):
            binds.add(cfg)
    site = _site_dirs()
    stdlib = [p for p in sys.path if p and not any(under(p, s) for s in site) and under(
        os.path.realpath(p), os.path.realpath(sys.base_prefix)) and "site-packages" not in p]
    provided_dists = distribution_closure(PROVIDED_PY)
    names = {_norm(str(d.metadata["Name"])) for d in provided_dists}  # type: ignore[attr-defined]
    runtime_only = [d for d in distribution_closure(RUNTIME_PY, HIDDEN_PY)
                    if _norm(str(d.metadata["Name"])) not in names]  # type: ignore[attr-defined]
    binds.update(distribution_paths(provided_dists))  # with metadata: importlib.metadata.version("boto3") works
    binds.update(distribution_paths(runtime_only, metadata=False))  # one mount per package, no more
    provided = sorted({os.path.dirname(p) for p in distribution_paths(distribution_closure(PROVIDED_PY))})
    if metadata_dir:
        metadata_copy(runtime_only, metadata_dir)
        binds.add(metadata_dir)
        provided.append(metadata_dir)
    return sorted(binds), [*stdlib, *provided]


def _site_dirs() -> list[str]:
    import site

    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        dirs.append(site.getusersitepackages())
    return [os.path.realpath(d) for d in dirs]


def under(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def site_masks() -> list[str]:
    """Every site-packages directory of this interpreter (the venv's and the base's): empty in the new
    root but for the provided distributions bound into them."""
    import sysconfig

    dirs = set(_site_dirs())
    for base in {sys.base_prefix, sys.prefix}:
        paths = sysconfig.get_paths(vars={"base": base, "platbase": base})
        dirs.update(os.path.realpath(paths[k]) for k in ("purelib", "platlib"))
    return sorted(dirs)


def etc_files(uid: int, gid: int) -> dict[str, str]:
    """The generated /etc: the function's user (or root when it keeps the server's uid), names for localhost."""
    name = "sbx_user" if uid else "root"
    home = "/tmp" if uid else "/root"
    return {
        "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n" + (
            f"{name}:x:{uid}:{gid}:function:{home}:/usr/sbin/nologin\n" if uid else ""),
        "group": "root:x:0:\n" + (f"{name}:x:{gid}:\n" if gid else ""),
        "hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
        "resolv.conf": _host_text("/etc/resolv.conf"),
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
        "hostname": "sandbox\n",
    }


def _host_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read(64 * 1024)
    except OSError:
        return ""


def layout(extra: Iterable[str]) -> list[str]:
    """Every host path bound into the root: the system directories, CA certificates and `extra`
    (interpreter, provided packages, the runtime's own files), existing ones only, parents before children."""
    paths = {p for p in (*SYSTEM, *ETC_BINDS, *extra) if os.path.lexists(p)}
    return sorted(paths, key=lambda p: (p.count("/"), p))


def interpreter_exposure() -> tuple[list[str], list[str]]:
    """(dirs to hide, dirs to bind back) so a per-function uid can import the interpreter's own modules.

    The interpreter may live where other users cannot go (pyenv under a 0700 /root). In the instance's
    mount namespace the blocking directory is covered by an empty tmpfs and only the interpreter's
    directories are bound back read-only, which also keeps the rest of it (SSH keys …) out of view.
    An interpreter or virtualenv under /tmp (a CI checkout, say) would vanish under the instance's
    private /tmp: it is bound back read-only too."""
    hide: list[str] = []
    binds: list[str] = []
    candidates = {sys.base_prefix, sys.prefix, sys.exec_prefix, *(p for p in sys.path if p)}
    for path in sorted(os.path.realpath(p) for p in candidates if os.path.isdir(p)):
        if any(path == b or path.startswith(b + os.sep) for b in binds):
            continue
        if path.startswith(("/tmp/", "/dev/shm/")):  # under the instance's private /tmp: bind it back
            binds.append(path)
            continue
        parts = path.split(os.sep)
        for i in range(2, len(parts)):
            ancestor = os.sep.join(parts[:i])
            if not os.stat(ancestor).st_mode & 0o001:  # others cannot traverse it
                if ancestor not in hide:
                    hide.append(ancestor)
                binds.append(path)
                break
    return hide, binds


def runtime_roots(py_binds: list[str], provided: str, mono: Sequence[str]) -> dict[str, list[str]]:
    """The shared part of each runtime's root. Python: interpreter, stdlib, provided packages and polyfn's
    provided vendor modules (`provided`: firebase_functions) — not the polyfn package. Node and `http`: the
    same interpreter (the sandbox helper and the `http` proxy are polyfn's Python) plus the polyfn package
    (the Node bootstrap and its flavors; the proxy's modules) and the node binary; `dotnet`: `http`'s and
    Mono's files (`mono`). The runtimes' own paths come from the caller: the sandbox knows no runtime."""
    import shutil

    import polyfn

    pkg = os.path.realpath(polyfn.__path__[0])
    node = os.environ.get("POLYFN_NODE") or shutil.which("node") or ""
    extra = [os.path.realpath(node)] if node else []
    return {"python": layout([*py_binds, provided]),
            "node": layout([*py_binds, pkg, *extra]),
            "http": layout([*py_binds, pkg]),
            "dotnet": layout([*py_binds, pkg, *mono])}  # the http proxy + Mono (runtimes/dotnet)


# --- child side -------------------------------------------------------------------------------------


def _ro(path: str) -> None:
    current = os.statvfs(path).f_flag
    flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | _NOSUID_NODEV
    for st, ms in ((os.ST_NOEXEC, linux.MS_NOEXEC), (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048),
                   (os.ST_RELATIME, 1 << 21)):
        if current & st:
            flags |= ms
    linux.mount("none", path, None, flags)


def _bind(fd: int, target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    linux.mount(f"/proc/self/fd/{fd}", target, None, linux.MS_BIND | linux.MS_REC)
    _ro(target)


#: where a pre-forked blank builds the shared part of the root before its function is known: a mount point
#: that instances do not need from the host (covered in the blank's own mount namespace only; /sys would hide
#: the cgroup files the spawn still writes). Code living under it is bound by a full build instead.
STAGE = "/dev/shm"

Source = tuple[str, int, bool]  # (host path, O_PATH descriptor, is a directory)


def _open(paths: list[str]) -> tuple[list[Source], list[tuple[str, str]]]:
    """Descriptors of `paths` (opened before anything covers them) and the top-level symlinks among them."""
    sources: list[Source] = []
    links: list[tuple[str, str]] = []
    try:
        for p in paths:
            if os.path.islink(p) and os.path.dirname(p) == "/":
                links.append((p, os.readlink(p)))  # /bin -> usr/bin on merged-/usr hosts
                continue
            if not os.path.exists(p):
                continue
            is_dir = os.path.isdir(p)
            fd = os.open(p, os.O_PATH | os.O_CLOEXEC | (os.O_DIRECTORY if is_dir else 0))
            sources.append((os.path.realpath(p) if is_dir else os.path.abspath(p), fd, is_dir))
    except BaseException:
        _close(sources)
        raise
    return sources, links


def _close(sources: list[Source]) -> None:
    for _, fd, _ in sources:
        os.close(fd)


def build(root: list[str], mask: list[str], tmp_mb: int, new: str) -> None:
    """The shared part of the root at `new` (a fresh tmpfs): `root` bound read-only at their host paths,
    `mask` covered where a bind brings them along (paths under a mask are bound on top of it), a private
    /tmp first (the function's code may live under the host's /tmp: it is bound into this one), /proc, /dev."""
    sources, links = _open(root)
    try:
        linux.mount("tmpfs", new, "tmpfs", _NOSUID_NODEV, "size=4m,mode=0755")
        size = f"size={tmp_mb}m," if tmp_mb else ""
        os.makedirs(new + "/tmp", mode=0o1777, exist_ok=True)
        linux.mount("tmpfs", new + "/tmp", "tmpfs", _NOSUID_NODEV, size + "mode=1777")
        for p, target in links:
            os.symlink(target, new + p)
        masks = sorted({*MASKED, *mask})
        bound: list[str] = []
        covered: list[str] = []
        for src, fd, is_dir in sorted(sources, key=lambda s: (s[0].count("/"), s[0])):
            if any(under(src, b) for b in bound) and not any(under(src, m) for m in covered):
                continue  # already visible through a parent bind
            _bind(fd, new + src, is_dir)
            if not is_dir:
                continue
            bound.append(src)
            for m in masks:
                if under(m, src) and m != src and os.path.isdir(new + m):
                    linux.mount("tmpfs", new + m, "tmpfs", _NOSUID_NODEV, "size=64k,mode=0755")
                    covered.append(m)
        for m in covered:
            linux.mount("none", new + m, None, linux.MS_REMOUNT | linux.MS_RDONLY | _NOSUID_NODEV)
        _finish_tree(new, tmp_mb)
    finally:
        _close(sources)


def attach(own: list[Source], etc: dict[str, str], new: str) -> None:
    """The function's part: its code and dependencies bound read-only at their host paths, its /etc."""
    for src, fd, is_dir in own:
        _bind(fd, new + src, is_dir)
    for name, text in etc.items():
        with open(f"{new}/etc/{name}", "w") as f:
            f.write(text)


def pivot(new: str) -> None:
    os.chdir(new)
    linux.pivot_root(".", ".")
    linux.umount(".", linux.MNT_DETACH)  # the old root, stacked under the new one
    os.chdir("/")


def enter(root: list[str], binds: list[str], etc: dict[str, str], tmp_mb: int, mask: list[str],
          stage: str = "/tmp") -> str:
    """Build the whole root on a tmpfs mounted at `stage` and pivot into it. `root` are the shared paths
    (system, interpreter, provided packages), `binds` the function's own (code, dependencies); both keep
    their host paths. Must run in a private mount namespace, before the uid drop. The root itself is left
    writable for the caller's last mounts (`/run/secrets`); `seal()` makes it read-only."""
    own, _ = _open(binds)  # before /tmp is covered: code may live under the host's /tmp
    try:
        build(root, mask, tmp_mb, stage)
        attach(own, etc, stage)
        pivot(stage)
    finally:
        _close(own)
    return "root fs (read-only binds, pivot_root)"


def enter_staged(binds: list[str], etc: dict[str, str], tmp_mb: int, stage: str = STAGE) -> str:
    """A blank built the shared part at `stage` (`build`); size its /tmp and /dev/shm for the function (its
    ephemeral storage: a remount of each empty tmpfs), add the function's part and pivot."""
    own, _ = _open(binds)
    try:
        if tmp_mb:  # (both empty tmpfs still; /dev/shm keeps noexec)
            linux.mount("none", stage + "/tmp", None, linux.MS_REMOUNT | _NOSUID_NODEV, f"size={tmp_mb}m,mode=1777")
            linux.mount("none", stage + "/dev/shm", None, linux.MS_REMOUNT | _NOSUID_NODEV | linux.MS_NOEXEC,
                        f"size={tmp_mb}m,mode=1777")
        attach(own, etc, stage)
        pivot(stage)
    finally:
        _close(own)
    return "root fs (read-only binds, pivot_root; staged in the blank)"


def pivot_ahead(stage: str = STAGE) -> None:
    """In a pre-forked blank that staged the shared root (`build`): enter it before the function is known —
    `pivot_root` and the old root's detach (an RCU grace period: milliseconds under load) off the cold path."""
    pivot(stage)


def enter_ahead(binds: list[str], etc: dict[str, str], tmp_mb: int, trees: list[int]) -> str:
    """The function's part in a root entered ahead (`pivot_ahead`): /tmp and /dev/shm sized for it, its code and
    dependencies attached read-only at their host paths from `trees` (one per bind, in order: detached copies
    the server made with open_tree, `instances/zygote.py`; recursive, private, the top mount read-only, nosuid,
    nodev — as `_bind`), its /etc. The same root as `enter_staged` builds, without a pivot or an unmount on the
    cold path."""
    if len(trees) != len(binds):
        raise OSError(f"the spawn brought {len(trees)} copies of the function's {len(binds)} paths")
    if tmp_mb:  # (both empty tmpfs still; /dev/shm keeps noexec)
        linux.mount("none", "/tmp", None, linux.MS_REMOUNT | _NOSUID_NODEV, f"size={tmp_mb}m,mode=1777")
        linux.mount("none", "/dev/shm", None, linux.MS_REMOUNT | _NOSUID_NODEV | linux.MS_NOEXEC,
                    f"size={tmp_mb}m,mode=1777")
    for path, tree in zip(binds, trees, strict=True):
        target = os.path.abspath(path)
        if stat.S_ISDIR(os.fstat(tree).st_mode):
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if not os.path.exists(target):
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
        linux.mount_setattr(tree, 0, linux.MS_PRIVATE, recursive=True)  # (a copy of a shared mount is its peer)
        linux.mount_setattr(tree, linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV)
        linux.move_mount(tree, target)
    for name, text in etc.items():
        with open(f"/etc/{name}", "w") as f:
            f.write(text)
    return "root fs (read-only binds, pivot_root; staged and entered in the blank)"


_DIGESTS: dict[tuple[str, str], str] = {}  # filled by the zygote (`staged_root`): blanks and spawns only look up


def digest(root: list[str], mask: list[str]) -> str:
    """Identifies a staged root, so a spawn uses it only if the plan asks for exactly that one (its /tmp
    is resized per function, `enter_staged`). Remembered: the zygote computes the node's one before it
    forks, and a forked child that ran json and hashlib itself would copy their pages."""
    key = ("\0".join(root), "\0".join(mask))
    known = _DIGESTS.get(key)
    if known is None:
        import hashlib
        import json

        known = _DIGESTS[key] = hashlib.sha256(json.dumps([root, mask]).encode()).hexdigest()[:16]
    return known


def seal() -> None:
    """Make the new root's own tmpfs (its directories, /etc) read-only."""
    linux.mount("none", "/", None, linux.MS_REMOUNT | linux.MS_RDONLY | _NOSUID_NODEV)


def _finish_tree(new: str, tmp_mb: int) -> None:
    os.makedirs(new + "/proc", mode=0o555, exist_ok=True)
    linux.mount("/proc", new + "/proc", None, linux.MS_BIND | linux.MS_REC)
    dev = new + "/dev"
    os.makedirs(dev, mode=0o755, exist_ok=True)
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "size=64k,mode=0755")
    for node in DEV_NODES:
        if os.path.exists("/dev/" + node):
            os.close(os.open(f"{dev}/{node}", os.O_WRONLY | os.O_CREAT, 0o666))
            linux.mount("/dev/" + node, f"{dev}/{node}", None, linux.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    size = f"size={tmp_mb}m," if tmp_mb else ""
    os.makedirs(dev + "/shm", mode=0o1777, exist_ok=True)
    linux.mount("tmpfs", dev + "/shm", "tmpfs", _NOSUID_NODEV | linux.MS_NOEXEC, size + "mode=1777")
    linux.mount("none", dev, None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NOEXEC)
    etcdir = new + "/etc"
    os.makedirs(etcdir, mode=0o755, exist_ok=True)
    zone = os.path.realpath("/etc/localtime") if os.path.exists("/etc/localtime") else ""
    if zone.startswith("/usr/share/zoneinfo/"):
        os.symlink(zone, etcdir + "/localtime")
    os.makedirs(new + "/run", mode=0o755, exist_ok=True)
