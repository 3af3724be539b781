"""cgroup memory, pids and CPU limits per instance, on cgroup v1 and v2.

The server finds a writable base once (`CgroupBase.detect`); each instance gets a child directory named
after it. The forked child joins it itself (`join`), before dropping privileges, so the server's hot path
does no cgroup I/O. After the instance exits the server reads whether the kernel OOM-killed it and removes
the directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_cgroup() -> tuple[int, dict[str, str]]:
    """(version, {controller: path}) of the current process, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    v2 = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if hid == "0" and controllers == "":
            v2 = path
        for c in controllers.split(","):
            if c:
                paths[c] = path
    if "memory" in paths:
        return 1, paths
    if v2 is not None:
        return 2, {"": v2}
    return 0, {}


@dataclass
class CgroupBase:
    version: int
    memory: Path  # directory under which instance cgroups are made (v1 memory hierarchy or the v2 dir)
    extra: dict[str, Path] = field(default_factory=dict)  # v1 only: pids, cpu hierarchies (same layout)
    controllers: tuple[str, ...] = ("memory",)  # v2: the controllers enabled for instances

    def dirs_for(self, pid: int) -> list[str]:
        """Every cgroup directory of the instance with zygote-child `pid`, memory first."""
        return [os.path.join(str(b), f"p{pid}") for b in (self.memory, *self.extra.values())]

    def describe(self) -> str:
        if self.version == 2:
            return "cgroup v2 (" + ", ".join(self.controllers) + ")"
        return "cgroup v1 (" + ", ".join(["memory", *self.extra]) + ")"

    @classmethod
    def detect(cls, name: str) -> tuple[CgroupBase | None, str]:
        """A writable base named `name` under our own cgroup, or None with the reason why not."""
        try:
            version, paths = _own_cgroup()
        except OSError as e:
            return None, f"cannot read /proc/self/cgroup: {e}"
        try:
            if version == 1:
                mem = ROOT / "memory" / paths["memory"].lstrip("/") / name
                cls.sweep_stale(mem.parent)
                mem.mkdir(exist_ok=True)
                extra: dict[str, Path] = {}
                for ctrl in ("pids", "cpu"):
                    if ctrl not in paths:
                        continue
                    d = ROOT / ctrl / paths[ctrl].lstrip("/") / name
                    cls.sweep_stale(d.parent)
                    try:
                        d.mkdir(exist_ok=True)
                        extra[ctrl] = d
                    except OSError:
                        pass
                base = cls(1, mem, extra)
                return base, base.describe()
            if version == 2:
                own = ROOT / paths[""].lstrip("/")
                controllers = (own / "cgroup.controllers").read_text().split()
                if "memory" not in controllers:
                    return None, "cgroup v2 without the memory controller delegated to us"
                base = own / name
                cls.sweep_stale(own)
                base.mkdir(exist_ok=True)
                enabled = ("memory", *(c for c in ("pids", "cpu") if c in controllers))
                (base / "cgroup.subtree_control").write_text(" ".join("+" + c for c in enabled))
                cg = cls(2, base, {}, enabled)
                return cg, cg.describe()
        except OSError as e:
            return None, f"no writable cgroup ({e.strerror or e})"
        return None, "no cgroup hierarchy found"

    def was_oom_killed(self, cgroup_dir: str) -> bool:
        d = Path(cgroup_dir)
        try:
            text = (d / ("memory.oom_control" if self.version == 1 else "memory.events")).read_text()
        except OSError:
            return False
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill" and v.strip() not in ("", "0"):
                return True
        return False

    def remove(self, cgroup_dir: str) -> None:
        try:
            os.rmdir(cgroup_dir)
        except OSError:
            pass

    def remove_all(self, pid: int) -> None:
        for d in self.dirs_for(pid):
            self.remove(d)

    def remove_base(self, wait: float = 2.0) -> None:
        """Remove every instance cgroup and the bases. Processes that are still dying (blanks killed with
        the zygote) keep their cgroup busy for a moment: retry briefly (shutdown path only)."""
        deadline = time.monotonic() + wait
        while True:
            left = [b for b in (self.memory, *self.extra.values()) if not _remove_tree(b)]
            if not left or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    @staticmethod
    def sweep_stale(parent: Path) -> int:
        """Remove `polyfn-<pid>` bases left by servers that died without cleaning up (kill -9)."""
        removed = 0
        try:
            entries = list(parent.glob("polyfn-*"))
        except OSError:
            return 0
        for base in entries:
            pid = base.name.removeprefix("polyfn-")
            if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
                continue
            removed += _remove_tree(base)
        return removed


def _remove_tree(base: Path) -> bool:
    """rmdir the (empty) instance cgroups under `base`, then `base`; True when it is gone."""
    try:
        for child in base.iterdir():
            if child.is_dir():
                try:
                    os.rmdir(child)
                except OSError:
                    pass
        os.rmdir(base)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def join(cgroup_dirs: list[str]) -> None:
    """Run in the child: make its own cgroup in every hierarchy and move itself in.

    Moving a task between cgroups waits for an RCU grace period (~10-15 ms on this kernel when joins are
    infrequent), which is why the zygote does this in pre-forked "blank" children, off the cold-start path.
    """
    for cgroup_dir in cgroup_dirs:  # (plain os calls: a blank runs as little of the zygote's code as it can)
        try:
            os.mkdir(cgroup_dir)
        except FileExistsError:
            pass
        fd = os.open(os.path.join(cgroup_dir, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _write(path: str, value: str) -> None:
    """One small write (plain os calls: this runs in forked children, which should run as little of the
    zygote's Python as they can — every object they touch is a page copied)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _try(path: str, value: str) -> bool:
    try:
        _write(path, value)
        return True
    except OSError:
        return False


def set_limits(cgroup_dirs: list[str], version: int, memory_mb: int, pids_max: int,
               cpu_shares: int = 0, cpu_quota: float = 0.0) -> str:
    """Set the instance's limits on the cgroups it is already in (cheap: a few small writes)."""
    limit = str(memory_mb * 1024 * 1024)
    done = [f"memory {memory_mb} MB"]
    period = 100_000
    if version == 1:
        by_ctrl = {_v1_controller(d): d for d in cgroup_dirs}
        mem = cgroup_dirs[0]
        # memory ≤ memsw must hold after every write: lowering writes memory first, raising (a blank preset
        # for a smaller function) needs memsw first — so retry memory after memsw when the first write fails.
        lowered = _try(mem + "/memory.limit_in_bytes", limit)
        _try(mem + "/memory.memsw.limit_in_bytes", limit)  # no swap beyond the limit, when accounted
        if not lowered:
            _write(mem + "/memory.limit_in_bytes", limit)
        if "pids" in by_ctrl and _try(by_ctrl["pids"] + "/pids.max", str(pids_max)):
            done.append(f"pids {pids_max}")
        if "cpu" in by_ctrl:
            if cpu_shares and set_cpu_weight(cgroup_dirs, version, cpu_shares):
                done.append(f"cpu shares {cpu_shares}")
            if cpu_quota > 0:
                _try(by_ctrl["cpu"] + "/cpu.cfs_period_us", str(period))
                if _try(by_ctrl["cpu"] + "/cpu.cfs_quota_us", str(int(cpu_quota * period))):
                    done.append(f"cpu quota {cpu_quota:g} cores")
        return "cgroup v1 (" + ", ".join(done) + ")"
    d = cgroup_dirs[0]
    _write(d + "/memory.max", limit)
    _try(d + "/memory.swap.max", "0")
    if _try(d + "/pids.max", str(pids_max)):
        done.append(f"pids {pids_max}")
    if cpu_shares and set_cpu_weight(cgroup_dirs, version, cpu_shares):
        done.append(f"cpu weight {_v2_weight(cpu_shares)}")
    if cpu_quota > 0 and _try(d + "/cpu.max", f"{int(cpu_quota * period)} {period}"):
        done.append(f"cpu quota {cpu_quota:g} cores")
    return "cgroup v2 (" + ", ".join(done) + ")"


def set_cpu_weight(cgroup_dirs: list[str], version: int, cpu_shares: int) -> bool:
    """Only the CPU weight of cgroups the instance is in (v1 `cpu.shares`; v2 `cpu.weight`, derived): the
    server splits a function's weight over its cgroups this way (instances/cpushare.py)."""
    if version == 1:
        cpu = next((str(d) for d in cgroup_dirs if _v1_controller(str(d)) == "cpu"), None)
        return cpu is not None and _try(cpu + "/cpu.shares", str(max(2, cpu_shares)))
    return bool(cgroup_dirs) and _try(str(cgroup_dirs[0]) + "/cpu.weight", str(_v2_weight(cpu_shares)))


def _v2_weight(cpu_shares: int) -> int:
    return max(1, min(10000, cpu_shares * 100 // 1024))


def _v1_controller(cgroup_dir: str) -> str:
    """The v1 controller a directory belongs to: the first component under /sys/fs/cgroup (a `pinned`
    directory is read through its descriptor's link)."""
    if cgroup_dir.startswith(_PINNED):
        cgroup_dir = os.readlink(cgroup_dir)
    root = str(ROOT) + "/"
    if not cgroup_dir.startswith(root):
        raise ValueError(f"{cgroup_dir!r} is not under {root}")
    return cgroup_dir[len(root):].split("/", 1)[0]


_PINNED = "/proc/self/fd/"


def pinned(cgroup_dir: str) -> str:
    """A path to `cgroup_dir` through a descriptor (`/proc/self/fd/N`), for a child that covers /sys
    before it writes its limits: a pre-forked blank stages its root filesystem on /sys (rootfs.STAGE), and
    the plain path would then name a file of that tmpfs. Closed at exec, and by `sandbox.release_host` once
    the limits are written (a Python instance does not exec)."""
    fd = os.open(cgroup_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"{_PINNED}{fd}"


def pinned_fd(cgroup_dir: str) -> int:
    """The descriptor behind a `pinned` path; -1 for a plain path."""
    return int(cgroup_dir[len(_PINNED):]) if cgroup_dir.startswith(_PINNED) else -1


class MemoryGauge:
    """The peak usage and the OOM kills of one memory cgroup, read through descriptors opened once, so a
    reading after each invocation is one `pread` (a few µs). v1: `memory.max_usage_in_bytes` and
    `memory.oom_control`; v2: `memory.peak` (Linux 5.19+) and `memory.events`. The peak is since the cgroup
    was made (Lambda's "Max Memory Used" is also the environment's so far): what the process, its children
    and its /tmp (a tmpfs) held at most."""

    def __init__(self, cgroup_dir: str, version: int):
        v1 = version == 1
        self._peak = self._open(os.path.join(cgroup_dir, "memory.max_usage_in_bytes" if v1 else "memory.peak"))
        self._events = self._open(os.path.join(cgroup_dir, "memory.oom_control" if v1 else "memory.events"))
        self.kills_seen = self.oom_kills()
        self._last = 0.0  # the peak read as it closed (the instance ended): what `peak_mb` answers after that

    @staticmethod
    def _open(path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return -1

    def peak_mb(self) -> float:
        """MB, 0.0 when unknown (no such file, or the cgroup is gone); once closed, the peak read as it closed
        (calls of an instance that ended are recorded after it: observe/recorder.py `peak_of`)."""
        if self._peak < 0:
            return self._last
        try:
            return int(os.pread(self._peak, 32, 0)) / 1_048_576
        except (OSError, ValueError):
            return 0.0

    def oom_kills(self) -> int:
        if self._events < 0:
            return 0
        try:
            text = os.pread(self._events, 512, 0)
        except OSError:
            return 0
        at = text.find(b"oom_kill ")
        if at < 0:
            return 0
        try:
            return int(text[at + 9:].split(b"\n", 1)[0])
        except ValueError:
            return 0

    def new_kills(self) -> int:
        """OOM kills in the cgroup since the last call (a child process killed for memory while the
        instance itself lived on)."""
        now = self.oom_kills()
        new, self.kills_seen = now - self.kills_seen, now
        return max(0, new)

    def close(self) -> None:
        if self._peak >= 0:
            self._last = self.peak_mb()
        for fd in (self._peak, self._events):
            if fd >= 0:
                os.close(fd)
        self._peak = self._events = -1
