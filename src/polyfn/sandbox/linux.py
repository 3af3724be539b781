"""Thin ctypes wrappers over the Linux calls Python 3.11 does not expose: unshare, setns, mount, prctl (and
madvise, mincore for the server's heap on 2 MB pages).

Every wrapper raises `OSError` with the real errno, so callers can report *why* a layer is unavailable.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

_libc: Any = None


def libc() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    return _libc


def preload() -> None:
    """In the zygote, before any fork: the libc handle and the function pointers its children call (a
    child that made them itself would build ctypes objects — a class per handle — in pages it copies)."""
    lib = libc()
    for name in ("prctl", "syscall", "sigaction"):
        getattr(lib, name, None)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(libc().unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(libc().setns(fd, nstype), "setns")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        libc().mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None),
        f"mount {target}",
    )


#: pivot_root has no glibc wrapper: the raw system call
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def pivot_root(new_root: str, put_old: str) -> None:
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unsupported architecture {os.uname().machine}")
    _check(libc().syscall(nr, new_root.encode(), put_old.encode()), "pivot_root")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(libc().umount2(target.encode(), flags), f"umount {target}")


# The new mount API (Linux 5.2+, mount_setattr 5.12+; the same numbers on every architecture): a pre-forked blank
# that entered its root ahead binds a function's code from a detached copy of the host's tree (rootfs.py).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def open_tree(dfd: int, path: str, flags: int) -> int:
    """A detached copy of the mount at `path` (relative to `dfd`): OPEN_TREE_CLONE (| AT_RECURSIVE)."""
    fd = libc().syscall(SYS_OPEN_TREE, ctypes.c_int(dfd), path.encode(), ctypes.c_uint(flags | os.O_CLOEXEC))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"open_tree {path}: {os.strerror(e)}")
    return int(fd)


def mount_setattr(fd: int, attr_set: int, propagation: int = 0, recursive: bool = False) -> None:
    attr = _MountAttr(attr_set, 0, propagation, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(libc().syscall(SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"", ctypes.c_uint(flags), ctypes.byref(attr),
                          ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


def move_mount(fd: int, target: str) -> None:
    """Attach the detached tree `fd` (open_tree) at `target`."""
    _check(libc().syscall(SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), target.encode(),
                          ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount {target}")


def prctl(option: int, arg2: int | Any = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    lib = libc()
    rc = lib.prctl(option, arg2, ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({option}): {os.strerror(e)}")
    return int(rc)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace (it starts down)."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


MADV_COLLAPSE = 25  # (Linux 6.1)
HUGE_PAGE = 2 << 20
PAGE = 4096
RESIDENT_SHARE = 0.9  # a 2 MB stretch is collapsed only when this share of its pages is in memory already


def heap_stretches(maps: str) -> list[tuple[int, int]]:
    """The 2 MB-aligned stretches of the private anonymous read-write mappings of a `/proc/PID/maps` text: the
    heap (`[heap]`, Python's object arenas, malloc's mappings), never a file's pages nor the main stack."""
    out = []
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[1] != "rw-p" or (len(parts) > 5 and parts[5] != "[heap]"):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        a, b = -(-lo // HUGE_PAGE) * HUGE_PAGE, hi // HUGE_PAGE * HUGE_PAGE
        out.extend((s, s + HUGE_PAGE) for s in range(a, b, HUGE_PAGE))
    return out


def collapse_heap() -> int:
    """Back this process's heap with 2 MB pages where it is (nearly) all in memory already (`madvise(MADV_COLLAPSE)`,
    Linux ≥ 6.1, whatever the system's transparent huge page setting "enabled" says): the bytes collapsed, 0
    where the kernel cannot. Why: on a VM whose other tenants empty the CPU caches and TLBs while the node idles,
    a call after idle misses the TLB on every page it touches; with the server's heap on 2 MB pages a start from a
    function's zygote after 0.1 s idle was 2–5 % shorter (docs/performance.md, "cold10"). Only stretches with at
    least `RESIDENT_SHARE` of their pages resident are collapsed (a sparse one would be filled: memory for
    nothing; so thread stacks, mostly untouched, are left as they are). Synchronous: ~1 ms per 2 MB (mostly the copy)."""
    try:
        with open("/proc/self/maps") as f:
            stretches = heap_stretches(f.read())
    except OSError:
        return 0
    lib = libc()
    lib.madvise.argtypes = lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    resident = (ctypes.c_ubyte * (HUGE_PAGE // PAGE))()
    done = 0
    for start, end in stretches:
        if lib.mincore(start, end - start, resident) != 0:
            continue
        if bytes(resident).count(1) < RESIDENT_SHARE * len(resident):  # (1: resident; Linux sets no other bit)
            continue
        if lib.madvise(start, end - start, MADV_COLLAPSE) == 0:  # (else: EINVAL before Linux 6.1, EAGAIN, ENOMEM)
            done += end - start
    return done
