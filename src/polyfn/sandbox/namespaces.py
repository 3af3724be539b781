"""Namespaces entered by a blank child before it knows its function: mount (+ ipc, uts), pid, net.

A pid namespace only applies to children of the process that unshares it, so with one the blank forks
twice, and an instance is three processes:

    zygote ─▶ supervisor (outside; the pid the server knows and kills)
                └─▶ init (pid 1 of the new namespace: reaps orphans, reports how the instance ended)
                      └─▶ instance (pid 2: an ordinary process, so `kill(getpid(), sig)` works as usual)

The supervisor ends exactly as the instance ended (same exit code, or the same signal, passed up through
a pipe since pid 1 cannot signal itself), so exit statuses reach the server through the zygote unchanged.
Killing the supervisor kills init (PR_SET_PDEATHSIG), and the death of pid 1 kills everything in the
namespace, forked descendants included.

The supervisor and init only wait: once forked, each execs the native helper `pidinit` (sandbox/pidinit.c,
`helper`: its path, from `POLYFN_SANDBOX_INIT`), which does the same in a few pages instead of a copy of
the interpreter (~1.5 MB of PSS each). Without it (not built, exec refused) they run `init`/`supervise`.

Network: the blank always enters a fresh network namespace (loopback only) and keeps a descriptor of the
host's; a `network: all` function goes back to the host network with one `setns` at spawn. Creating the
namespace is paid here, off the cold-start path.
"""

from __future__ import annotations

import os
import resource
import signal

from polyfn.sandbox import linux
from polyfn.sandbox.plan import Prepared


def enter(layers: set[str], prepared: Prepared, pdeathsig: object, helper: str = "") -> None:
    """Unshare the namespaces in `layers`; with "pid", return in the new pid-2 grandchild (the caller's
    process becomes its supervisor and its child the namespace's init; neither returns from here)."""
    flags = 0
    host_fd = -1
    userns = "user" in layers
    if userns:  # not root: a user namespace owns the others (and rejoining the host network is impossible)
        flags |= linux.CLONE_NEWUSER
        layers = layers - {"net"}
    if "net" in layers:
        flags |= linux.CLONE_NEWNET
    if "mount" in layers:
        flags |= linux.CLONE_NEWNS | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS
    if "pid" in layers and "mount" in layers:  # a pid namespace without a fresh /proc would be half a wall
        flags |= linux.CLONE_NEWPID
    if not flags:
        return
    try:
        if flags & linux.CLONE_NEWNET:
            host_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        uid, gid = os.getuid(), os.getgid()
        linux.unshare(flags)
        if userns:
            map_self(uid, gid)
    except OSError as e:
        if host_fd >= 0:
            os.close(host_fd)
        prepared.notes.append(f"namespaces unavailable ({e.strerror or e})")
        return
    if userns:
        prepared.namespaces.append("user")
    if flags & linux.CLONE_NEWNET:
        prepared.host_netns_fd = host_fd
        linux.loopback_up()
        prepared.namespaces.append("net")
    if flags & linux.CLONE_NEWNS:
        linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing we mount leaks to the host
        prepared.namespaces.append("mount")
    if flags & linux.CLONE_NEWPID:
        prepared.host_pid = os.getpid()
        r, w = os.pipe()
        child = os.fork()
        if child:
            run_helper(helper, "supervise", r, child)
            supervise(child, r)  # never returns
        os.close(r)
        pdeathsig()  # reset by fork: die with the supervisor
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        instance = os.fork()
        if instance:
            run_helper(helper, "init", w, instance)
            init(instance, w)  # never returns
        os.close(w)
        pdeathsig()
        prepared.namespaces.append("pid")
        prepared.pid_ns = True


def map_self(uid: int, gid: int) -> None:
    """In a fresh user namespace: be root inside it, mapped to our own unprivileged uid/gid outside.
    Root there only has power over namespaces that user namespace owns (our mount/pid namespaces)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def run_helper(helper: str, role: str, report: int, pid: int) -> None:
    """Become the native helper in `role` (returns only if it cannot be exec'd: the Python loop follows)."""
    if not helper:
        return
    try:
        os.set_inheritable(report, True)
        os.execve(helper, [helper, role, str(report), str(pid)], {})
    except OSError:
        pass


def init(instance: int, report: int) -> None:
    """pid 1 of the instance's namespace: reap every orphan; when the instance ends, report its raw wait
    status to the supervisor and exit (which kills whatever is left in the namespace)."""
    os.closerange(3, report)
    os.closerange(report + 1, 65536)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(70)
        if pid == instance:
            os.write(report, status.to_bytes(4, "little"))
            os._exit(0)


def supervise(child: int, report: int) -> None:
    """Outside the pid namespace: wait for its init and end exactly as the instance ended."""
    os.closerange(3, report)
    os.closerange(report + 1, 65536)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(70)
    reported = os.read(report, 4)
    if len(reported) == 4 and os.WIFEXITED(status):  # init ended normally: the instance's status is news
        status = int.from_bytes(reported, "little")
    end_like(status)


def end_like(status: int) -> None:
    """End this process exactly as the process with raw wait `status` ended (same code or same signal)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)
