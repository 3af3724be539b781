"""seccomp as an allow-list: each runtime gets the system calls an ordinary program of its kind needs.

The lists below are plain data; libseccomp (Debian's `libseccomp2`, through ctypes) turns a list into a
BPF program for this machine's architectures (it knows every syscall number, the x32 and compat ABIs,
and sorts the comparisons into a tree), and exports it. The program is built once per runtime (in the
Python zygote before any fork; in the server for the Node and `http` spawner, which gets it in its config)
and installed with `prctl`, so an instance never calls into libseccomp.

What a call outside the list gets:

* **privileged** calls (mount, ptrace, bpf, keyctl, namespaces, module loading …; `PRIVILEGED`): `EPERM`,
  what an unprivileged process gets anyway, so libraries that try them carry on;
* calls libc or libuv try before a fallback (`clone3`, `io_uring_*`; `QUIET`): `ENOSYS`;
* `clone` with a namespace flag: `EPERM` (`clone` itself is allowed: threads and `fork`);
* **anything else**: `SIGSYS`. A Python instance (`SECCOMP_RET_TRAP`) catches it (`name_refusals`),
  tells the server which call it was and dies by it, so the activation says "killed by SIGSYS: … `name`".
  Node and `http` processes are killed (`SECCOMP_RET_KILL_PROCESS`), which the kernel logs with the call:
  the server names it from there when it can read the kernel log (`sandbox/auditlog.py`);
* a call from another ABI (x32, or 32-bit `int 0x80` on x86-64): the process is killed.

The filter is inherited by every child, across `execve`, and cannot be removed. It needs
`no_new_privs` (or root).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import platform
import signal
import threading
from collections.abc import Callable

from polyfn.sandbox import linux

# --- the lists (x86-64 / generic names; a name absent on an architecture is skipped there) -------------

_FILES = """read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 open openat openat2 creat
close close_range dup dup2 dup3 lseek _llseek fstat lstat stat newfstatat fstatat64 statx statfs
fstatfs fstat64 lstat64 stat64 statfs64 fstatfs64 access faccessat faccessat2 getdents getdents64 readlink
readlinkat truncate ftruncate fallocate fsync fdatasync sync_file_range syncfs sync rename renameat renameat2
unlink unlinkat mkdir mkdirat rmdir link linkat symlink symlinkat chmod fchmod fchmodat fchmodat2 chown fchown
lchown fchownat umask utime utimes utimensat futimesat getcwd chdir fchdir flock fcntl fcntl64 ioctl
fadvise64 fadvise64_64 readahead sendfile sendfile64 copy_file_range splice tee vmsplice mknod mknodat
getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr fsetxattr removexattr
lremovexattr fremovexattr inotify_init inotify_init1 inotify_add_watch inotify_rm_watch memfd_create"""
_MEMORY = """brk mmap mmap2 munmap mremap mprotect madvise msync mincore mlock mlock2 munlock mlockall munlockall
pkey_alloc pkey_free pkey_mprotect membarrier process_madvise remap_file_pages memfd_secret
get_mempolicy set_mempolicy mbind"""  # NUMA policy of its own memory: libnuma's constructor asks (awscrt loads it)
_PROCESS = """clone fork vfork execve execveat exit exit_group wait4 waitid waitpid kill tkill tgkill getpid
getppid gettid getpgid setpgid getpgrp getsid setsid getuid geteuid getgid getegid getresuid getresgid
getgroups setuid setgid setreuid setregid setresuid setresgid setgroups setfsuid setfsgid capget capset
prctl arch_prctl set_tid_address set_robust_list get_robust_list rseq futex futex_waitv futex_wait
futex_wake futex_requeue sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_setparam
sched_getscheduler sched_setscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval
sched_getattr getpriority setpriority getrlimit setrlimit prlimit64 ugetrlimit getrusage times uname
sysinfo getcpu pidfd_open pidfd_send_signal pidfd_getfd personality restart_syscall seccomp
ioprio_get ioprio_set set_thread_area get_thread_area"""
_SIGNALS = """rt_sigaction rt_sigprocmask rt_sigreturn rt_sigsuspend rt_sigpending rt_sigtimedwait
rt_sigqueueinfo rt_tgsigqueueinfo sigaltstack signalfd signalfd4 sigreturn sigaction sigprocmask pause
alarm getitimer setitimer timer_create timer_settime timer_gettime timer_getoverrun timer_delete
timerfd_create timerfd_settime timerfd_gettime"""
_TIME = """clock_gettime clock_getres clock_nanosleep nanosleep gettimeofday time clock_gettime64
clock_nanosleep_time64 clock_getres_time64"""
_EVENTS = """poll ppoll select pselect6 _newselect epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait
epoll_pwait2 eventfd eventfd2 pipe pipe2"""
_SOCKETS = """socket socketpair bind listen accept accept4 connect getsockname getpeername getsockopt setsockopt
sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg shutdown socketcall"""
_IPC = """shmget shmat shmdt shmctl semget semop semtimedop semctl msgget msgsnd msgrcv msgctl mq_open mq_unlink
mq_timedsend mq_timedreceive mq_notify mq_getsetattr getrandom"""

COMMON = frozenset(" ".join((_FILES, _MEMORY, _PROCESS, _SIGNALS, _TIME, _EVENTS, _SOCKETS, _IPC)).split())
# A Python or Node function, and whatever it starts (`subprocess`, `child_process`: a shell, git, python3).
PYTHON = COMMON
NODE = COMMON
# Any executable: Go, the JVM, Rust and C++ servers also move their pages between NUMA nodes and set
# scheduling attributes.
HTTP = COMMON | frozenset("set_mempolicy_home_node migrate_pages move_pages sched_setattr".split())
# Mono (the `dotnet` runtime: a native host behind the `http` proxy) is one of those executables.
PROFILES = {"python": PYTHON, "node": NODE, "http": HTTP, "dotnet": HTTP}

# Privileged calls: EPERM, as for any process without capabilities.
PRIVILEGED = frozenset("""ptrace syslog vhangup pivot_root _sysctl adjtimex chroot acct settimeofday mount umount2
umount swapon swapoff reboot sethostname setdomainname iopl ioperm create_module init_module delete_module
get_kernel_syms query_module quotactl quotactl_fd nfsservctl lookup_dcookie clock_settime clock_adjtime
kexec_load kexec_file_load add_key request_key keyctl unshare setns perf_event_open open_by_handle_at
process_vm_readv process_vm_writev finit_module bpf userfaultfd open_tree move_mount fsopen fsconfig fsmount
fspick mount_setattr fanotify_init""".split())
QUIET = frozenset("clone3 io_uring_setup io_uring_enter io_uring_register".split())  # ENOSYS: callers fall back
DENIED = sorted(PRIVILEGED)  # the documented list

_SCMP_ACT_KILL_PROCESS = 0x80000000
_SCMP_ACT_TRAP = 0x00030000
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_FLTATR_ACT_BADARCH = 2
_SCMP_FLTATR_CTL_OPTIMIZE = 8  # 2: a binary tree of syscall numbers (libseccomp >= 2.5), not a linear scan
_SCMP_CMP_MASKED_EQ = 7
_SA_SIGINFO = 4
_SA_RESETHAND = 0x80000000


def _errno_action(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """libseccomp, or OSError naming the package to install."""
    try:  # the soname first: find_library runs ldconfig, a process of its own
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so", use_errno=True)
        except OSError:
            raise OSError(errno.ENOENT, "libseccomp is not installed (Debian/Ubuntu: apt install libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_remove.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p  # malloc'd char *
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _arch(lib: ctypes.CDLL, machine: str | None) -> int:
    if machine is None or machine == platform.machine():
        return lib.seccomp_arch_native()
    token = lib.seccomp_arch_resolve_name(machine.encode())
    if not token:
        raise OSError(errno.ENOSYS, f"libseccomp knows no architecture {machine!r}")
    return token


def _rule(lib: ctypes.CDLL, ctx: int, action: int, nr: int, *cmps: _ArgCmp) -> None:
    arr = (_ArgCmp * max(1, len(cmps)))(*cmps)
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
    if rc < 0 and rc != -errno.EEXIST:
        raise OSError(-rc, f"seccomp rule for syscall {nr}: {os.strerror(-rc)}")


@functools.lru_cache(maxsize=8)  # built once in the zygote (preload), reused by every fork
def build(profile: str = "python", machine: str | None = None) -> bytes:
    """The filter for `profile` on `machine` (default: this one), as packed `sock_filter`s."""
    allow = PROFILES[profile]
    lib = library()
    # Python catches the SIGSYS and names the call; Node and `http` processes cannot, so they are killed,
    # which the kernel logs with the call (sandbox/auditlog.py).
    ctx = lib.seccomp_init(_SCMP_ACT_TRAP if profile == "python" else _SCMP_ACT_KILL_PROCESS)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    try:
        arch = _arch(lib, machine)
        native = lib.seccomp_arch_native()
        if arch != native:
            lib.seccomp_arch_add(ctx, arch)
            lib.seccomp_arch_remove(ctx, native)
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_ACT_BADARCH, _SCMP_ACT_KILL_PROCESS)
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, 2)  # older libseccomp: ignored, still correct

        def nr(name: str) -> int:
            return lib.seccomp_syscall_resolve_name_arch(arch, name.encode())

        groups = ((allow - PRIVILEGED - QUIET - {"clone"}, _SCMP_ACT_ALLOW),
                  (PRIVILEGED, _errno_action(errno.EPERM)), (QUIET, _errno_action(errno.ENOSYS)))
        for names, action in groups:
            for name in sorted(names):
                n = nr(name)
                if n >= 0:  # negative: not a call of this architecture
                    _rule(lib, ctx, action, n)
        clone = nr("clone")
        _rule(lib, ctx, _SCMP_ACT_ALLOW, clone, _ArgCmp(0, _SCMP_CMP_MASKED_EQ, linux.NS_FLAGS, 0))
        for bit in range(32):
            if linux.NS_FLAGS & (1 << bit):
                _rule(lib, ctx, _errno_action(errno.EPERM), clone,
                      _ArgCmp(0, _SCMP_CMP_MASKED_EQ, 1 << bit, 1 << bit))
        fd = os.memfd_create("polyfn-seccomp")
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise OSError(-rc, f"seccomp_export_bpf: {os.strerror(-rc)}")
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


@functools.lru_cache(maxsize=1)
def names() -> dict[int, str]:
    """Syscall number → name on this machine (for naming a refused call without calling libseccomp then)."""
    lib = library()
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    arch = lib.seccomp_arch_native()
    out: dict[int, str] = {}
    for n in range(600):
        p = lib.seccomp_syscall_resolve_num_arch(arch, n)
        if p:
            out[n] = ctypes.string_at(p).decode()
            libc.free(p)
    return out


def mode() -> str:
    """How seccomp is applied on this host, in one line (`polyfn doctor`); raises OSError without libseccomp."""
    lib = library()

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    sizes = ", ".join(f"{name} {len(calls)}" for name, calls in PROFILES.items())
    return (f"allow-list per runtime ({sizes} calls), compiled by libseccomp {v.major}.{v.minor}.{v.micro}; "
            f"{len(PRIVILEGED)} privileged calls answer EPERM, any other call outside the list ends the instance "
            "by SIGSYS, the call named in the activation's error (Node and http: from the kernel log, as root)")


_given: dict[str, bytes] = {}  # programs compiled elsewhere (the server, for its spawner: sandbox/spawn.py)


def provide(profile: str, program: bytes) -> None:
    """Use `program` for `profile` in this process instead of compiling it (a fresh spawner would pay
    libseccomp's ~4 ms on every `http` cold start)."""
    if len(program) % 8 or not program:
        raise ValueError("a seccomp program is a whole number of 8-byte instructions")
    _given[profile] = program


def program_for(profile: str) -> bytes:
    """The program to install for `profile`: the one provided, else compiled here (and cached)."""
    return _given.get(profile) or build(profile)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(profile: str = "python") -> int:
    """Install `profile`'s filter on this thread group; returns the number of allowed calls.
    SECCOMP_FILTER_FLAG_TSYNC would need the seccomp(2) syscall; we install before any thread starts."""
    program = program_for(profile)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    linux.prctl(linux.PR_SET_SECCOMP, linux.SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    return len(PROFILES[profile])


# --- naming a refused call (Python instances) ------------------------------------------------------------

class _Sigaction(ctypes.Structure):  # glibc's struct sigaction (x86-64 and the generic layout alike)
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]


_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_report: Callable[[str], None] | None = None
_keep: list[object] = []


def refusal(nr: int) -> str:
    """The message for a call the filter refused."""
    name = names().get(nr, f"syscall {nr}")
    return f"the sandbox's seccomp filter refused the system call `{name}` ({nr})"


def _on_sigsys(signo: int, info: int, _ctx: int) -> None:
    # siginfo_t: si_signo, si_errno, si_code, padding, then (for SIGSYS) void *call_addr, int syscall.
    nr = ctypes.c_int.from_address(info + 24).value
    try:
        if _report is not None:
            _report(refusal(nr))
    finally:  # SA_RESETHAND made the action SIG_DFL: the signal, pending until we return, ends the process
        signal.pthread_kill(threading.get_ident(), signal.SIGSYS)


def name_refusals(report: Callable[[str], None]) -> None:
    """On SIGSYS from the filter, call `report(message naming the call)`, then die by SIGSYS.

    The handler runs on the thread that made the call, right after it (the call was not executed), and
    re-raises the signal with the default action, so the process still ends by SIGSYS as the server
    expects. Calling it again (a function zygote's child) only changes where the report goes."""
    global _report
    _report = report
    names()  # resolve now, not inside the handler
    if _keep:
        return
    cb = _HANDLER(_on_sigsys)
    act = _Sigaction(ctypes.cast(cb, ctypes.c_void_p).value, (ctypes.c_ulong * 16)(), _SA_SIGINFO | _SA_RESETHAND, None)
    libc = linux.libc()  # (made by the zygote: a new handle would be a new ctypes class in the instance)
    if libc.sigaction(int(signal.SIGSYS), ctypes.byref(act), None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"sigaction(SIGSYS): {os.strerror(e)}")
    _keep.append(cb)


def redirect(report: Callable[[str], None]) -> None:
    """Send later reports to `report`, if `name_refusals` is in force in this process (inherited on fork)."""
    global _report
    if _keep:
        _report = report
