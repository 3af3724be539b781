"""A seccomp deny-list written as a small classic-BPF program: no library, easy to audit.

Functions never need to mount filesystems, trace other processes, load kernel modules, make namespaces
or use the kernel keyring, so those system calls return `EPERM` (they are also the ones most kernel
exploits start from). `clone` with namespace flags is refused too; `clone3` answers `ENOSYS` (its flags
live in memory BPF cannot read), which makes libc fall back to `clone`, as Docker's profile does. A call
from another ABI (x32, or 32-bit `int 0x80` on x86-64) kills the process.

The filter is inherited by every child and cannot be removed. It needs `no_new_privs` (or root).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import platform
import struct

from polyfn.sandbox import linux

# Syscall numbers per architecture. Names missing on an architecture are simply absent there.
_X86_64 = {
    "ptrace": 101, "syslog": 103, "vhangup": 153, "pivot_root": 155, "_sysctl": 156, "adjtimex": 159,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
    "create_module": 174, "init_module": 175, "delete_module": 176, "get_kernel_syms": 177,
    "query_module": 178, "quotactl": 179, "nfsservctl": 180, "lookup_dcookie": 212, "clock_settime": 227,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}
_AARCH64 = {  # the generic syscall table (asm-generic/unistd.h)
    "lookup_dcookie": 18, "umount2": 39, "mount": 40, "pivot_root": 41, "quotactl": 60, "acct": 89,
    "unshare": 97, "kexec_load": 104, "init_module": 105, "delete_module": 106, "clock_settime": 112,
    "syslog": 116, "ptrace": 117, "reboot": 142, "sethostname": 161, "setdomainname": 162,
    "settimeofday": 170, "adjtimex": 171, "add_key": 217, "request_key": 218, "keyctl": 219, "swapon": 224,
    "swapoff": 225, "perf_event_open": 241, "name_to_handle_at": 264, "open_by_handle_at": 265,
    "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271,
    "finit_module": 273, "bpf": 280, "userfaultfd": 282, "kexec_file_load": 294, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "chroot": 51, "vhangup": 58,
}
ARCHES = {
    "x86_64": (0xC000003E, _X86_64, 56, 435),  # audit arch, table, clone, clone3
    "aarch64": (0xC00000B7, _AARCH64, 220, 435),
}
DENIED = sorted(_X86_64)  # the documented list (x86-64 names)

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000
X32_SYSCALL_BIT = 0x40000000


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


@functools.lru_cache(maxsize=4)  # built once in the zygote (preload), reused by every fork
def build(machine: str | None = None) -> bytes:
    """The filter program for `machine` (default: this one), as packed `sock_filter`s."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise OSError(errno.ENOSYS, f"no seccomp syscall table for {machine}")
    arch, table, clone, clone3 = ARCHES[machine]
    deny = RET_ERRNO | errno.EPERM
    prog = [
        _ins(_LD_W_ABS, 0, 0, 4),  # A = arch
        _ins(_JEQ_K, 1, 0, arch),
        _ins(_RET_K, 0, 0, RET_KILL_PROCESS),
        _ins(_LD_W_ABS, 0, 0, 0),  # A = nr
    ]
    if machine == "x86_64":
        prog += [_ins(_JGE_K, 0, 1, X32_SYSCALL_BIT), _ins(_RET_K, 0, 0, RET_KILL_PROCESS)]
    for nr in sorted(set(table.values())):
        prog += [_ins(_JEQ_K, 0, 1, nr), _ins(_RET_K, 0, 0, deny)]
    prog += [
        _ins(_JEQ_K, 0, 1, clone3), _ins(_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
        _ins(_JEQ_K, 0, 4, clone),
        _ins(_LD_W_ABS, 0, 0, 16),  # A = low 32 bits of args[0] (clone flags, little endian)
        _ins(_JSET_K, 0, 1, linux.NS_FLAGS),
        _ins(_RET_K, 0, 0, deny),
        _ins(_RET_K, 0, 0, RET_ALLOW),
        _ins(_RET_K, 0, 0, RET_ALLOW),
    ]
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> int:
    """Install the deny-list filter on this thread group; returns the number of denied calls."""
    program = build()
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    # SECCOMP_FILTER_FLAG_TSYNC would need the seccomp(2) syscall; we install before any thread starts.
    linux.prctl(linux.PR_SET_SECCOMP, linux.SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    return len(ARCHES[platform.machine()][1]) + 2
