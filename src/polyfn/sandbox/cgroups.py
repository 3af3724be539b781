"""cgroup memory (and pids) limits per instance, on cgroup v1 and v2.

The server finds a writable base once (`CgroupBase.detect`); each instance gets a child directory named
after it. The forked child joins it itself (`join`), before dropping privileges, so the server's hot path
does no cgroup I/O. After the instance exits the server reads whether the kernel OOM-killed it and removes
the directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
                mem.mkdir(exist_ok=True)
                return cls(1, mem), "cgroup v1 memory controller"
            if version == 2:
                own = ROOT / paths[""].lstrip("/")
                controllers = (own / "cgroup.controllers").read_text().split()
                if "memory" not in controllers:
                    return None, "cgroup v2 without the memory controller delegated to us"
                base = own / name
                base.mkdir(exist_ok=True)
                (base / "cgroup.subtree_control").write_text("+memory" + (" +pids" if "pids" in controllers else ""))
                return cls(2, base), "cgroup v2 memory controller"
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

    def remove_base(self) -> None:
        for child in self.memory.glob("*"):
            if child.is_dir():
                try:
                    os.rmdir(child)
                except OSError:
                    pass
        try:
            os.rmdir(self.memory)
        except OSError:
            pass


def join(cgroup_dir: str, version: int) -> None:
    """Run in the child: make its own cgroup and move itself in.

    Moving a task between cgroups waits for an RCU grace period (~10-15 ms on this kernel when joins are
    infrequent), which is why the zygote does this in pre-forked "blank" children, off the cold-start path.
    """
    d = Path(cgroup_dir)
    d.mkdir(exist_ok=True)
    (d / "cgroup.procs").write_text("0")


def set_limits(cgroup_dir: str, version: int, memory_mb: int, pids_max: int) -> str:
    """Set the instance's limits on the cgroup it is already in (cheap: a few small writes)."""
    d = Path(cgroup_dir)
    limit = str(memory_mb * 1024 * 1024)
    if version == 1:
        (d / "memory.limit_in_bytes").write_text(limit)
        try:  # no swap beyond the limit, when swap accounting is on
            (d / "memory.memsw.limit_in_bytes").write_text(limit)
        except OSError:
            pass
        return f"cgroup v1 (memory {memory_mb} MB)"
    (d / "memory.max").write_text(limit)
    for key, value in (("memory.swap.max", "0"), ("pids.max", str(pids_max))):
        try:
            (d / key).write_text(value)
        except OSError:
            pass
    return f"cgroup v2 (memory {memory_mb} MB, pids {pids_max})"
