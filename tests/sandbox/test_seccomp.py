"""The seccomp allow-lists, checked against the real kernel: a table of calls that must pass and calls that
must be refused (and how), per runtime. Each call runs in a fresh forked child under the filter, so a
SIGSYS ends only that child. Installing a filter needs `no_new_privs`, not root: these run everywhere
libseccomp is installed (and fail under CI=true where it is not)."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import sys

import pytest

from polyfn.sandbox import linux, seccomp

from ..needs import missing, tool

try:
    LIB = seccomp.library()
except OSError as e:  # asked of the system itself: is the shared library there?
    LIB = None
    WHY = str(e)


@pytest.fixture(autouse=True)
def _libseccomp() -> None:
    if LIB is None:
        missing(WHY)


def nr(name: str) -> int:
    return LIB.seccomp_syscall_resolve_name_arch(LIB.seccomp_arch_native(), name.encode())


def run(profile: str, name: str, args: tuple[int, ...] = (), raw_nr: int | None = None) -> tuple[str, str]:
    """(outcome, detail) of `syscall(name, *args)` under `profile`: "allow", "eperm", "enosys" or "sigsys"
    (detail: what the instance's SIGSYS handler reported)."""
    number = nr(name) if raw_nr is None else raw_nr
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            linux.set_no_new_privs()
            seccomp.install(profile)
            seccomp.name_refusals(lambda text: os.write(w, b"report " + text.encode()))
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            rc = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
            os.write(w, f"rc {rc} {ctypes.get_errno()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    text = out.decode()
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGSYS, (name, status, text)
        return "sigsys", text
    assert os.WIFEXITED(status) and text.startswith("rc "), (name, status, text)
    _, rc, err = text.split()
    if int(rc) == -1 and int(err) == errno.EPERM:
        return "eperm", text
    if int(rc) == -1 and int(err) == errno.ENOSYS:
        return "enosys", text
    return "allow", text


NEWUSER, NEWNET, SIGCHLD = linux.CLONE_NEWUSER, linux.CLONE_NEWNET, 17
BAD = -1  # an fd/pointer/flag the kernel rejects (EBADF, EFAULT, EINVAL): the call is made and fails harmlessly

# (name, args) that every runtime must be able to make. Arguments make the kernel fail them harmlessly
# (never with EPERM or ENOSYS, which would look like a refusal).
MUST_PASS = [
    ("read", (BAD, 0, 0)), ("write", (BAD, 0, 0)), ("openat", (BAD, 0, 0)), ("close", (BAD,)),
    ("newfstatat", (BAD, 0, 0, 0)), ("statx", (BAD, 0, 0, 0, 0)), ("getdents64", (BAD, 0, 0)),
    ("mmap", (0, 0, 0, 0, BAD, 0)), ("mprotect", (0, 0, 0)), ("munmap", (1, 0)), ("madvise", (1, 0, 0)),
    ("futex", (0, 1, 1, 0, 0, 0)), ("clone", (BAD & ~linux.NS_FLAGS,)), ("execve", (0, 0, 0)),
    ("wait4", (BAD, 0, 0, 0)), ("kill", (0, BAD)), ("rt_sigaction", (BAD, 0, 0, 8)),
    ("socket", (BAD, 0, 0)), ("connect", (BAD, 0, 0)), ("accept4", (BAD, 0, 0, 0)),
    ("sendmsg", (BAD, 0, 0)), ("recvfrom", (BAD, 0, 0, 0, 0, 0)), ("epoll_create1", (BAD,)),
    ("epoll_pwait", (BAD, 0, 0, 0, 0, 0)), ("eventfd2", (0, BAD)), ("pipe2", (0, BAD)), ("poll", (0, 0, 0)),
    ("prctl", (BAD, 0, 0, 0, 0)), ("getrandom", (0, 0, 0)), ("getpid", ()), ("uname", (0,)),
    ("capget", (0, 0)), ("pkey_alloc", (BAD, 0)), ("rseq", (0, 0, BAD, 0)), ("sched_getaffinity", (0, 0, 0)),
    ("prlimit64", (0, BAD, 0, 0)), ("clock_nanosleep", (BAD, 0, 0, 0)), ("setuid", (BAD,)),
    ("seccomp", (BAD, 0, 0)), ("memfd_create", (0, 0)), ("close_range", (1, 0, 0)),
    ("get_mempolicy", (0, 0, 0, 0, BAD)), ("mbind", (0, 0, 0, 0, 0, BAD)),
]
# Refused for every runtime, and how.
MUST_FAIL = [
    *((name, (), "eperm") for name in (
        "mount", "umount2", "pivot_root", "chroot", "ptrace", "bpf", "keyctl", "add_key", "request_key",
        "unshare", "setns", "init_module", "finit_module", "delete_module", "kexec_load", "reboot", "swapon",
        "perf_event_open", "process_vm_readv", "process_vm_writev", "userfaultfd", "open_by_handle_at",
        "fsopen", "move_mount", "open_tree", "sethostname", "settimeofday", "clock_settime", "acct", "syslog")),
    ("clone", (NEWUSER | SIGCHLD,), "eperm"),
    ("clone", (NEWNET | SIGCHLD,), "eperm"),
    ("clone3", (0, 0), "enosys"),  # libc falls back to clone, whose flags the filter can read
    ("io_uring_setup", (0, 0), "enosys"),  # libuv falls back to its thread pool
    ("uselib", (0,), "sigsys"),
    ("sysfs", (1, 0), "sigsys"),
    ("modify_ldt", (0, 0, 0), "sigsys"),
    ("kcmp", (0, 0, 0, 0, 0), "sigsys"),
]
# Differences between runtimes: a `http` binary (Go, the JVM …) may move its pages between NUMA nodes.
PER_RUNTIME = [("move_pages", (0, 0, 0, 0, 0, BAD), {"python": "sigsys", "node": "sigsys", "http": "allow"}),
               ("sched_setattr", (0, 0, BAD), {"python": "sigsys", "node": "sigsys", "http": "allow"})]
PROFILES = ("python", "node", "http")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("name", "args"), MUST_PASS, ids=[c[0] for c in MUST_PASS])
def test_must_pass(profile: str, name: str, args: tuple[int, ...]) -> None:
    outcome, detail = run(profile, name, args)
    assert outcome == "allow", (profile, name, detail)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("name", "args", "expect"), MUST_FAIL,
                         ids=[f"{c[0]}-{c[1][0]:#x}" if c[1] else c[0] for c in MUST_FAIL])
def test_must_fail(profile: str, name: str, args: tuple[int, ...], expect: str) -> None:
    outcome, detail = run(profile, name, args)
    assert outcome == expect, (profile, name, detail)
    if expect == "sigsys" and profile == "python":  # trapped: the process names the call before it dies
        assert f"`{name}` ({nr(name)})" in detail, detail
    elif expect == "sigsys":  # node, http: killed outright (no handler runs); the kernel logs the call
        assert "report" not in detail, detail


@pytest.mark.parametrize(("name", "args", "expect"), PER_RUNTIME, ids=[c[0] for c in PER_RUNTIME])
@pytest.mark.parametrize("profile", PROFILES)
def test_per_runtime(profile: str, name: str, args: tuple[int, ...], expect: dict[str, str]) -> None:
    outcome, detail = run(profile, name, args)
    assert outcome == expect[profile], (profile, name, detail)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x32 ABI exists on x86-64 only")
def test_other_abis_are_killed() -> None:
    outcome, detail = run("python", "getpid", raw_nr=0x40000000 | 39)  # getpid through the x32 ABI
    assert outcome == "sigsys" and "report" not in detail, detail  # killed outright, even where others trap


def test_every_listed_name_is_a_real_syscall() -> None:
    """A typo in a list would silently allow nothing (or refuse nothing): libseccomp must know every name."""
    known = LIB.seccomp_arch_native()
    for name in sorted(seccomp.HTTP | seccomp.PRIVILEGED | seccomp.QUIET):
        assert LIB.seccomp_syscall_resolve_name_arch(known, name.encode()) != -1, name  # -1: unknown name
    assert not (seccomp.HTTP & seccomp.PRIVILEGED)
    assert seccomp.PYTHON <= seccomp.HTTP and seccomp.NODE <= seccomp.HTTP


def test_program_is_built_for_other_architectures() -> None:
    for machine in ("x86_64", "aarch64"):
        prog = seccomp.build("python", machine)
        assert len(prog) % 8 == 0 and 0 < len(prog) // 8 < 4096
    with pytest.raises(OSError):
        seccomp.build("python", "sparc-unknown")


WORKLOAD_PY = """
import asyncio, socket, subprocess, threading, multiprocessing, sqlite3, tempfile, os, ssl
t = threading.Thread(target=lambda: None); t.start(); t.join()
assert subprocess.run(["sh", "-c", "echo hi | cat"], capture_output=True).stdout == b"hi\\n"
a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); c = socket.create_connection(s.getsockname())
asyncio.run(asyncio.sleep(0.001))
with multiprocessing.Pool(2) as p: assert p.map(abs, [-1, -2]) == [1, 2]
d = tempfile.mkdtemp(); db = sqlite3.connect(d + "/db"); db.execute("create table t(x)"); db.commit()
ssl.create_default_context()
print("ok")
"""
WORKLOAD_JS = """
const cp = require('child_process'), http = require('http'), fs = require('fs'), crypto = require('crypto');
const { Worker } = require('worker_threads');
if (cp.spawnSync('sh', ['-c', 'echo hi | cat']).stdout.toString() !== 'hi\\n') throw new Error('spawn');
fs.writeFileSync('/tmp/polyfn-seccomp-' + process.pid, 'x'); fs.unlinkSync('/tmp/polyfn-seccomp-' + process.pid);
crypto.randomBytes(8);
new Worker('1 + 1', { eval: true }).on('exit', () => {
  const srv = http.createServer((q, r) => r.end('ok')).listen(0, '127.0.0.1', () => {
    http.get('http://127.0.0.1:' + srv.address().port, (r) => { r.resume(); r.on('end', () => {
      srv.close(); console.log('ok'); }); });
  });
});
"""


def _under_filter(profile: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    def install() -> None:
        linux.set_no_new_privs()
        seccomp.install(profile)

    return subprocess.run(argv, capture_output=True, text=True, timeout=60, preexec_fn=install)


def test_a_python_program_runs_under_the_python_list() -> None:
    """Threads, fork, a shell pipeline, sockets, asyncio, a process pool, sqlite, TLS set-up."""
    p = _under_filter("python", [sys.executable, "-c", WORKLOAD_PY])
    assert p.returncode == 0 and p.stdout.strip() == "ok", (p.returncode, p.stderr[-2000:])


def test_a_node_program_runs_under_the_node_list() -> None:
    """child_process, worker threads, fs, crypto, an HTTP server and client (libuv's io_uring probe falls back)."""
    node = tool("node")
    p = _under_filter("node", [node, "-e", WORKLOAD_JS])
    assert p.returncode == 0 and p.stdout.strip() == "ok", (p.returncode, p.stderr[-2000:])


def test_a_provided_program_is_the_one_installed() -> None:
    """The server compiles each list once and hands the program to its spawner (no libseccomp there): the
    program provided for a profile is the one installed, so an `http` program under `python`'s name allows
    `move_pages`."""
    def body() -> str:
        seccomp.provide("python", seccomp.build("http"))
        return run_inline("move_pages", (0, 0, 0, 0, 0, BAD))

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, body().encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 100)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and out == b"allow", (status, out)
    with pytest.raises(ValueError):
        seccomp.provide("python", b"\0" * 7)


def run_inline(name: str, args: tuple[int, ...]) -> str:
    """`run` from a process that already holds a provided program (its fork inherits it)."""
    return run("python", name, args)[0]
