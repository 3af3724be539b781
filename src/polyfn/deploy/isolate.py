"""Where deploy-time builds run (pip, npm, go): as a uid of their own, away from the node's secrets.

A deployer controls `requirements.txt`, `package.json` and the Go code; pip runs an sdist's `setup.py`, a
requirements file may name any file (`-r /etc/shadow`), a `go.mod` may `replace` a module with any
directory. So on a node running as root with a mount namespace (`BuildSandbox.isolated`), each build:

* runs as a uid of its own (`BuildUids`: the `build_slots` uids right after the functions' range, one per
  running build on the host, never a function's, never two builds' at once, whichever node runs them), with setgroups([]), `no_new_privs`, rlimits
  (processes of that uid, file size, open files) and a wall-clock limit (`build_timeout`), in a cgroup with
  the node's memory/pids limits when there is one, in a pid namespace when the node has them;
* in a private mount namespace where the data dir (admin.key, node.key, the databases, every function's code
  and dependencies) is covered by an empty tmpfs and only the build's own directory (`Workspace.root`:
  its HOME, TMPDIR, inputs and output) is bound back read-write; /tmp is a private tmpfs;
* with a scrubbed environment: PATH, LANG, HOME and TMPDIR of its own, and only the operator's tool settings
  (`PIP_*`, `npm_config_*`, a few `GO*`, proxy and CA variables; their user-level files pip.conf, .npmrc and
  go/env copied into the build's HOME) — never `POLYFN_*`, keys or database URLs;
* on the node's `egress` network when it has one (the internet, never the host's loopback services or
  private ranges; DNS to the node's resolvers), else on the host's network as before;
* with private caches (pip, npm, Go's build and module caches live in its HOME and go with it): a cache
  shared between tenants' builds could be poisoned by one of them.

Its result (`Workspace.finish`) is checked (every entry the build uid's, no device or fifo), made root's and
read-only to others (lchown, never following a link) once every process of the uid is gone, and only then
renamed into place by the caller. Without root (or with `POLYFN_SANDBOX_DISABLE=build`), builds run as
before: the server's uid and environment (`polyfn doctor` says so).
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import re
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from polyfn.deploy.archive import remove_tree
from polyfn.deploy.errors import DeployError
from polyfn.sandbox.plan import SandboxPlan

#: the environment a build keeps from the server's: the operator's settings of the build tools
KEEP_ENV = frozenset({
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "GOPROXY", "GOFLAGS", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GONOSUMCHECK", "GOSUMDB", "GOINSECURE",
    "GOVCS", "GOTOOLCHAIN", "GOROOT", "GOAMD64", "GOARM", "GO386", "GOEXPERIMENT",
})
KEEP_PREFIXES = ("PIP_", "npm_config_", "NPM_CONFIG_")
#: where the build uids in use are locked, host-wide (`BuildUids`)
UID_LOCKS = Path("/run/polyfn/build-uids")
#: the operator's user-level tool settings (relative to the server's HOME), copied into the build's HOME
USER_CONFIG = (".npmrc", ".config/go/env")
#: pip's configuration files but the user's, lowest precedence first (pip reads the global ones, the user's, the
#: interpreter's prefix's, then `PIP_CONFIG_FILE`): merged, without credentials, into the build's own user file
PIP_SITE = ("/etc/xdg/pip/pip.conf", "/etc/pip.conf", os.path.join(sys.prefix, "pip.conf"))
PIP_USER = (".pip/pip.conf", ".config/pip/pip.conf")
#: the host's tool settings files any uid can read, hidden in the build's mount namespace (their content reaches the
#: build through its own files, without credentials): pip's site files, npm's global npmrc
NPM_GLOBAL = ("/etc/npmrc", "/usr/etc/npmrc", "/usr/local/etc/npmrc")
HIDDEN_CONFIG = (*PIP_SITE, *NPM_GLOBAL)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")
#: npmrc keys that hold credentials (`//registry.example.com/:_authToken=…`, `_auth`, `_password`, `username`)
_NPM_SECRET = re.compile(r"^\s*[^=#;]*(?:_auth|_authToken|_password|username|email|certfile|keyfile)\s*=", re.I)


def strip_credentials(value: str) -> str:
    """`value` with the user info of every URL in it removed (`https://user:token@idx/simple` →
    `https://idx/simple`). Pure."""
    return _USERINFO.sub(r"\1", value)


def build_env(environ: Mapping[str, str], home: Path, tmp: Path, credentials: bool = False) -> dict[str, str]:
    """A build's environment from the server's: only what `KEEP_ENV`/`KEEP_PREFIXES` name, its own HOME and TMPDIR;
    without `credentials`, no URL in it carries a user or password (the build's code can read its environment).
    Pure."""
    env = {k: v for k, v in environ.items() if k in KEEP_ENV or k.startswith(KEEP_PREFIXES)}
    if not credentials:
        env = {k: strip_credentials(v) for k, v in env.items()
               if not (k.startswith(("npm_config_", "NPM_CONFIG_")) and _NPM_SECRET.match(k[11:] + "="))}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.pop("PIP_CONFIG_FILE", None)  # (merged into HOME: see `copy_user_config`)
    env.update(HOME=str(home), TMPDIR=str(tmp), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"))
    return env


def pip_config(environ: Mapping[str, str], credentials: bool = False, site: tuple[str, ...] = PIP_SITE) -> str:
    """The operator's pip configuration as one file, in pip's precedence (the global files, the user's — unless
    `PIP_CONFIG_FILE` names a file —, the interpreter prefix's, then `PIP_CONFIG_FILE`; `site`: all but the user's,
    the last one the prefix's): what the build's pip reads, the files themselves being out of its reach. Without
    `credentials`, no URL in it carries a user or password."""
    import configparser

    src_home = Path(environ.get("HOME") or os.path.expanduser("~"))
    xdg = environ.get("XDG_CONFIG_HOME")
    env_file = environ.get("PIP_CONFIG_FILE") or ""
    user = [] if env_file and os.path.exists(env_file) else [  # (pip skips the user's files then)
        *(str(src_home / rel) for rel in PIP_USER), *([str(Path(xdg) / "pip/pip.conf")] if xdg else [])]
    files = [*site[:-1], *user, *site[-1:], *([env_file] if env_file else [])]
    merged = configparser.RawConfigParser()
    for name in files:
        one = configparser.RawConfigParser()
        try:
            one.read(name, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue  # (pip would refuse it too; the build runs without it)
        for section in one.sections():
            if not merged.has_section(section):
                merged.add_section(section)
            for key, value in one.items(section):
                merged.set(section, key, value if credentials else strip_credentials(value))
    out = io.StringIO()
    merged.write(out)
    return out.getvalue()


def has_credentials(environ: Mapping[str, str]) -> bool:
    """Whether the operator's tool settings hold credentials a build does not get (said at start: an index that
    needs them will refuse the builds)."""
    with tempfile.TemporaryDirectory(prefix="polyfn-creds-") as tmp:
        a, b = Path(tmp, "a"), Path(tmp, "b")
        copy_user_config(environ, a, credentials=False)
        copy_user_config(environ, b, credentials=True)
        files = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        differ = any(not (a / f).exists() or (a / f).read_bytes() != (b / f).read_bytes() for f in files)
    return differ or build_env(environ, Path("/"), Path("/")) != build_env(environ, Path("/"), Path("/"), True)


def copy_user_config(environ: Mapping[str, str], home: Path, credentials: bool = False,
                     site: tuple[str, ...] = PIP_SITE, npm_global: tuple[str, ...] = NPM_GLOBAL) -> list[Path]:
    """The operator's pip/npm/go settings, into the build's HOME (the server's HOME may be a 0700 /root the build
    cannot read; pip's site files are hidden from it): pip's merged (`pip_config`) into `.config/pip/pip.conf`,
    npm's global and user npmrc into `.npmrc`, Go's `go/env`. Without `credentials`, no URL keeps a user or
    password and npm's auth keys are left out."""
    copied = []
    src_home = Path(environ.get("HOME") or os.path.expanduser("~"))
    xdg = environ.get("XDG_CONFIG_HOME")
    pairs = [(Path(p), home / ".npmrc") for p in npm_global]
    pairs += [(src_home / rel, home / rel) for rel in USER_CONFIG]
    if xdg:
        pairs.append((Path(xdg) / "go/env", home / ".config/go/env"))
    for src, dest in pairs:
        try:
            data = src.read_text("utf-8", "replace")
        except OSError:
            continue
        if not credentials:
            data = "\n".join(strip_credentials(ln) for ln in data.splitlines() if not _NPM_SECRET.match(ln))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "a") as f:  # (npm's global then user file: appended, the later one wins)
            f.write(data + "\n")
        copied.append(dest)
    pip = pip_config(environ, credentials, site)
    if pip:
        dest = home / ".config/pip/pip.conf"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(pip)
        copied.append(dest)
    return copied


#: characters of a build's output line kept (the tail goes into the deploy's error message)
MAX_LINE = 2000


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
        cut = False
        while True:
            try:
                raw = await proc.stdout.readline()  # type: ignore[union-attr]
            except ValueError:  # a line past the reader's 64 KiB: dropped (it was a 500 with the build's text)
                if not cut:
                    tail.append("(an output line longer than 64 KiB was left out)")
                    cut = True
                continue
            if not raw:
                return
            cut = False
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line[:MAX_LINE] + (" …" if len(line) > MAX_LINE else ""))
                del tail[:-40]
                progress(tail[-1])

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


def exit_note(code: int) -> str:
    """" (killed by SIGKILL)" for a build tool a signal ended (a limit: memory, time, file size), else "". Pure."""
    if code >= 0 and code != 128 + signal.SIGXFSZ:
        return ""
    sig = -code if code < 0 else code - 128
    try:
        return f" (killed by {signal.Signals(sig).name})"
    except ValueError:
        return f" (killed by signal {sig})"


def try_flock(path: Path) -> int | None:
    """An exclusive flock on `path` (made 0600 if missing, never through a link) unless another holds one: its
    descriptor (closed: released), else None. `BuildUids`' locks, the Go standard library's (build.py)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException as e:
        os.close(fd)
        if type(e) is BlockingIOError:
            return None
        raise
    return fd


class BuildUids:
    """One uid per running build out of `count` from `base` (right after the functions' uids), on the whole host:
    a uid is taken by holding an exclusive flock on `lock_dir/<uid>` (released when the build ends, or when its
    server dies), so the builds of two nodes on one host never share a uid (nor kill each other's processes at
    the end, `kill_uid`). A build waits, polling, while all are taken."""

    def __init__(self, base: int, count: int, lock_dir: Path, poll: float = 0.2):
        self.base, self.count, self.lock_dir, self.poll = base, count, lock_dir, poll
        self._held: dict[int, int] = {}

    async def take(self) -> int:
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            for uid in range(self.base, self.base + self.count):
                if uid in self._held:
                    continue
                fd = try_flock(self.lock_dir / str(uid))
                if fd is not None:
                    self._held[uid] = fd
                    return uid
            await asyncio.sleep(self.poll)

    async def give(self, uid: int) -> None:
        fd = self._held.pop(uid, -1)
        if fd >= 0:
            os.close(fd)

    def kill_orphans(self, uid: int) -> None:
        """Kill what a build of a server that died left running as `uid`, unless a live build holds the uid (its
        `take` killed them already). Blocking."""
        if uid in self._held:
            return
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = try_flock(self.lock_dir / str(uid))
        if fd is not None:
            try:
                kill_uid(uid)
            finally:
                os.close(fd)


def kill_uid(uid: int, attempts: int = 50) -> int:
    """SIGKILL every process whose real uid is `uid` (a build may have left some behind) until none is left;
    how many were killed. A uid's processes cannot outlive this (each pass kills what the last one missed)."""
    killed = 0
    for _ in range(attempts):
        found = list(_pids_of(uid))
        if not found:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return killed


def _pids_of(uid: int) -> Iterator[int]:
    want = str(uid)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if line.split()[1] == want:
                            yield int(name)
                        break
        except OSError:
            continue


def seal(root: Path, uid: int) -> None:
    """Make a build's output root's and read-only to everyone else, without following any link: every entry
    must be the build uid's (anything else — a hard link to another user's file — fails the build); fifos and
    sockets are dropped; modes become 0755 (directories, executables) or 0644. Call once no process of `uid` is
    left (kill_uid)."""
    def fix(path: str, st: os.stat_result) -> None:
        if st.st_uid != uid:
            raise ValueError(f"the build left {os.path.relpath(path, root)!r}, which is not its own (uid {st.st_uid})")
        os.lchown(path, 0, 0)
        if stat.S_ISLNK(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111:
            os.chmod(path, 0o755)  # (not a link: checked above; nothing of the uid runs)
        else:
            os.chmod(path, 0o644)

    fix(str(root), os.lstat(root))
    for dirpath, dirs, files in os.walk(root):  # (os.walk never descends into a link)
        for name in [*dirs, *files]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                os.unlink(path)  # a fifo or socket has no place in dependencies
                continue
            fix(path, st)


#: the name of a build's directory (`tempfile.mkdtemp(prefix=".build-")`): what `sweep` may remove
BUILD_DIR = re.compile(r"\.build-[A-Za-z0-9_]{8}")


class Workspace:
    """A build's directory under `parent` (on the destination's filesystem): `root` (0700, the build uid's)
    holds `home`, `tmp`, `src` (inputs: code, requirements) and `out`, the result the caller renames into place
    after `finish`. The server holds an flock on `root` while it lives: `sweep` leaves a locked one alone."""

    def __init__(self, parent: Path, uid: int | None):
        self.uid = uid
        self.root = Path(tempfile.mkdtemp(prefix=".build-", dir=parent))
        self._lock = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.home = self.root / "home"
        self.tmp = self.root / "tmp"
        self.src = self.root / "src"
        self.out = self.root / "out"
        for d in (self.home, self.tmp, self.src, self.out):
            d.mkdir()
        if uid is None:
            self.out.chmod(0o755)
        self.env: dict[str, str] = {}

    def write(self, rel: str, data: bytes, under: Path | None = None) -> Path:
        """An input file (requirements, package.json, code) under `src` (or `under`), the build's own."""
        path = (under or self.src) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def hand_over(self) -> None:
        """Everything made so far becomes the build uid's (just before the build starts)."""
        if self.uid is None:
            return
        for dirpath, dirs, files in os.walk(self.root):
            os.lchown(dirpath, self.uid, self.uid)
            for name in [*dirs, *files]:
                os.lchown(os.path.join(dirpath, name), self.uid, self.uid)

    def finish(self, code: str, keep: Callable[[str], bool] | None = None) -> Path:
        """The output, sealed (see `seal`; a DeployError `code` if it cannot be): root's and read-only to others.
        `keep`: which of its top-level names to keep (the others — inputs — are removed first)."""
        if keep is not None:
            for name in os.listdir(self.out):
                if not keep(name):
                    p = self.out / name
                    if p.is_dir() and not p.is_symlink():
                        remove_tree(p)
                    else:
                        p.unlink()
        if self.uid is not None:
            kill_uid(self.uid)
            try:
                seal(self.out, self.uid)
            except ValueError as e:
                raise DeployError(code, str(e)) from None
        else:
            self.out.chmod(0o755)  # the instance runs as a per-function uid
        return self.out

    def remove(self) -> None:
        try:
            remove_tree(self.root)
        finally:
            if self._lock >= 0:
                os.close(self._lock)
                self._lock = -1


def sweep(parent: Path, uids: BuildUids | None = None) -> list[str]:
    """Remove the build directories (`BUILD_DIR`) a server that died left in `parent`: only real directories of
    that name (never a link, never followed), only when no live build holds their flock (a node sharing the data
    dir may be building in one); what the dead build may have left running as its uid is killed first (`uids`).
    The names removed. Blocking: at start, before any build."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not BUILD_DIR.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            owner = os.fstat(fd).st_uid
            if uids is not None and uids.base <= owner < uids.base + uids.count:
                uids.kill_orphans(owner)  # (nothing of that build may change the tree while it is removed)
            remove_tree(Path(entry.path))
            removed.append(entry.name)
        except BlockingIOError:
            continue  # a live build's
        finally:
            os.close(fd)
    return removed


def put(path: Path, data: bytes) -> None:
    """Write a marker or record into a sealed output (`.complete`, `.requirements.txt`) as root: whatever the build
    left under that name (a link to /etc/passwd, say) is removed first, and the new file never follows a link."""
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    elif os.path.lexists(path):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class BuildSandbox:
    """Runs a node's deploy-time builds (see the module doc). `node_sandbox`: returns the node's NodeSandbox once
    it decided its layers (instances/sandboxing.py), or None (tests; no sandbox)."""

    def __init__(self, settings: Any, node_sandbox: Callable[[], Any] = lambda: None,
                 environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.node_sandbox = node_sandbox
        self.environ = os.environ if environ is None else environ
        self.uids = BuildUids(settings.sandbox_uid_base + settings.sandbox_uid_count, settings.build_slots, UID_LOCKS)

    def sweep(self, parents: list[Path]) -> list[str]:
        """What builds of a server that died left under `parents` (see `sweep`), removed."""
        return [name for parent in parents for name in sweep(parent, self.uids)]

    def isolated(self) -> bool:
        """Builds run as their own uid in a mount namespace: root, the probe found mount namespaces, and
        `POLYFN_SANDBOX_DISABLE` does not name `build`."""
        sb = self.node_sandbox()
        return (os.geteuid() == 0 and sb is not None and "build" not in self.settings.disabled_layers
                and sb.probe.get("mount") == "")

    def describe(self) -> str:
        if not self.isolated():
            why = ("disabled by configuration" if "build" in self.settings.disabled_layers else
                   "not root" if os.geteuid() != 0 else "no mount namespace")
            return f"deploy builds: as the server, with its environment ({why})"
        creds = ("credentials passed (POLYFN_BUILD_CREDENTIALS)" if self.settings.build_credentials else
                 "the operator's index credentials withheld (POLYFN_BUILD_CREDENTIALS=true passes them)"
                 if has_credentials(self.environ) else "")
        return (f"deploy builds: uid of their own, data dir hidden, scrubbed environment, network "
                f"{self._network()}" + (f", {creds}" if creds else ""))

    def _network(self) -> str:
        sb = self.node_sandbox()
        return "egress" if sb is not None and sb.egress and sb.net_ok else "host"

    @asynccontextmanager
    async def workspace(self, parent: Path) -> Any:
        parent.mkdir(parents=True, exist_ok=True)
        uid = await self.uids.take() if self.isolated() else None
        ws: Workspace | None = None
        try:
            if uid is not None:  # (what a build of a server that died may have left running as this uid)
                await asyncio.to_thread(kill_uid, uid)
            ws = Workspace(parent, uid)
            if uid is None:
                ws.env = dict(self.environ)
            else:
                creds = self.settings.build_credentials
                ws.env = build_env(self.environ, ws.home, ws.tmp, creds)
                await asyncio.to_thread(copy_user_config, self.environ, ws.home, creds)
            yield ws
        finally:
            if uid is not None:
                await asyncio.to_thread(kill_uid, uid)
            if ws is not None:
                await asyncio.to_thread(ws.remove)
            if uid is not None:
                await self.uids.give(uid)

    async def run(self, ws: Workspace, argv: list[str], cwd: Path, env: Mapping[str, str],
                  progress: Callable[[str], None], ro: tuple[Path, ...] | list[Path] = ()) -> tuple[int, list[str]]:
        """Run a build tool in `ws` (with `env` over the workspace's environment), streaming its output lines to
        `progress`; (exit code, last 40 lines). Past `build_timeout` seconds it is killed (exit code -9, said in
        the tail). `ro`: directories of the data dir the build may read (the Go standard library's packages)."""
        full = {**ws.env, **env}
        if ws.uid is None:
            return await run_streaming(argv, cwd, full, progress, timeout=self.settings.build_timeout)
        ws.hand_over()
        plan, prepare, required = self._plan(ws, [str(p.resolve()) for p in ro])
        from polyfn.instances.launcher import prepare_env, spawn_command
        from polyfn.sandbox.spawn import Config

        cfg = Config(mode="exec", argv=argv, env=full, cwd=str(cwd), prepare_env=prepare_env(plan, prepare),
                     plan=plan, required=required, tag_env=False)
        cfg_fd = os.memfd_create("polyfn-build", os.MFD_CLOEXEC)
        pid = 0
        try:
            os.write(cfg_fd, msgspec.json.encode(cfg))

            def started(p: int) -> None:
                nonlocal pid
                pid = p

            return await run_streaming(spawn_command(cfg_fd), Path("/"), {"PATH": full.get("PATH", "")}, progress,
                                       timeout=self.settings.build_timeout, pass_fds=(cfg_fd,), started=started)
        finally:
            os.close(cfg_fd)
            await asyncio.to_thread(kill_uid, ws.uid)
            sb = self.node_sandbox()
            if pid and sb is not None and sb.cgroups is not None:
                sb.cgroups.remove_all(pid)

    def _plan(self, ws: Workspace, ro: list[str]) -> tuple[SandboxPlan, dict[str, str], list[str]]:
        s = self.settings
        sb = self.node_sandbox()
        from polyfn.sandbox import rootfs

        hide, binds = rootfs.interpreter_exposure()  # (sys.executable and polyfn may live under a 0700 /root)
        network = self._network()
        namespaces = {"mount"} | ({"pid"} & sb.namespaces) | ({"net"} if network == "egress" else set())
        prepare = {"POLYFN_SANDBOX_NS": ",".join(sorted(namespaces))}
        if sb.pid_helper:
            prepare["POLYFN_SANDBOX_INIT"] = sb.pid_helper
        if sb.cgroups is not None:
            prepare.update({"POLYFN_CGROUP_BASE": str(sb.cgroups.memory),
                            "POLYFN_CGROUP_EXTRA": ",".join(f"{k}={v}" for k, v in sb.cgroups.extra.items()),
                            "POLYFN_CGROUP_VERSION": str(sb.cgroups.version)})
        if network == "egress":
            prepare["POLYFN_SANDBOX_EGRESS"] = "1"
        plan = SandboxPlan(
            memory_mb=s.build_memory,
            cgroup_base=str(sb.cgroups.memory) if sb.cgroups is not None else "",
            cgroup_version=sb.cgroups.version if sb.cgroups is not None else 0,
            pids_max=s.build_processes,
            nofile=8192,
            fsize_mb=s.build_file_size,
            cpu_shares=512,
            cpu_quota=s.cpu_quota,
            uid=ws.uid or 0,
            gid=ws.uid or 0,
            tmp_mb=s.tmp_size,
            hide=[str(s.data_dir.resolve()), *hide,
                  *([] if s.build_credentials else [p for p in HIDDEN_CONFIG if os.path.lexists(p)])],
            binds=[*ro, *binds],
            rw_binds=[str(ws.root.resolve())],
            network=network,
            no_new_privs=True,
            nproc=s.build_processes,
        )
        return plan, prepare, sorted(namespaces)
