"""Which sandbox layers this host allows, and why not: used by `polyfn doctor` and at `polyfn serve` start.

Each layer is tried for real in a throw-away forked child (unsharing changes the calling process), so the
answer is what the kernel says today, not a guess from version numbers. Run as
`python -m polyfn.sandbox.probe` to get the JSON on stdout; the server runs it so (`in_subprocess`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable


def _in_child(fn: Callable[[], None]) -> str:
    """Run `fn` in a forked child; "" when it worked, else the reason."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            fn()
            msg = b""
        except BaseException as e:
            msg = (getattr(e, "strerror", None) or str(e) or type(e).__name__).encode()[:500]
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 1024):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out.decode(errors="replace")


def _mount() -> None:
    from polyfn.sandbox import linux

    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("tmpfs", "/tmp", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=1m")


def _pid() -> None:
    from polyfn.sandbox import linux

    linux.unshare(linux.CLONE_NEWPID | linux.CLONE_NEWNS)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    pid = os.fork()
    if pid == 0:
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        os._exit(0 if os.getpid() == 1 else 1)
    _, st = os.waitpid(pid, 0)
    if st != 0:
        raise OSError("cannot mount a fresh /proc in a new pid namespace")


def _root() -> None:
    """A root filesystem of its own: a tmpfs entered with pivot_root (sandbox/rootfs.py)."""
    from polyfn.sandbox import linux

    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
        from polyfn.sandbox import namespaces

        namespaces.map_self(uid, gid)
    else:
        linux.unshare(linux.CLONE_NEWNS)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("tmpfs", "/tmp", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=64k")
    os.chdir("/tmp")
    linux.pivot_root(".", ".")
    linux.umount(".", linux.MNT_DETACH)


def _net() -> None:
    from polyfn.sandbox import linux

    linux.unshare(linux.CLONE_NEWNET)
    linux.loopback_up()


def _seccomp() -> None:
    from polyfn.sandbox import linux, seccomp

    linux.set_no_new_privs()
    for profile in seccomp.PROFILES:
        seccomp.build(profile)
    seccomp.install("python")


def _userns() -> None:
    from polyfn.sandbox import linux

    linux.unshare(linux.CLONE_NEWUSER)


def _userns_all() -> None:
    """Not root: a user namespace owning mount + pid namespaces, a fresh /proc, a tmpfs, a netns."""
    from polyfn.sandbox import linux, namespaces

    uid, gid = os.getuid(), os.getgid()
    linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWIPC
                  | linux.CLONE_NEWUTS)
    namespaces.map_self(uid, gid)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("tmpfs", "/tmp", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=1m")
    pid = os.fork()
    if pid == 0:
        try:
            linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
            linux.unshare(linux.CLONE_NEWNET)
            linux.loopback_up()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    if st != 0:
        raise OSError("cannot mount /proc or make a network namespace inside the user namespace")


def probe() -> dict[str, str]:
    """{layer: "" if available else why not} for mount, root, pid, net, uid, seccomp, userns."""
    root = os.geteuid() == 0
    if root:
        res = {"mount": _in_child(_mount), "pid": _in_child(_pid), "net": _in_child(_net),
               "seccomp": _in_child(_seccomp), "userns": _in_child(_userns)}
        res["uid"] = "needs the mount namespace (the data dir is 0700)" if res["mount"] else ""
        res["root"] = (res["mount"] and "needs the mount namespace") or _in_child(_root)
        return res
    # Not root: the namespaces come from a user namespace, if the kernel allows unprivileged ones.
    why = _in_child(_userns_all)
    res = {"mount": why and f"not root and no user namespace ({why})", "seccomp": _in_child(_seccomp),
           "userns": why}
    res["pid"] = res["mount"]
    res["net"] = res["mount"]
    res["root"] = res["mount"] or _in_child(_root)
    res["uid"] = "not root (a user namespace maps only your own uid)"
    return res


async def in_subprocess() -> dict[str, str]:
    """`polyfn.sandbox.probe` in a subprocess (it forks and unshares; never do that in the server)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "polyfn.sandbox.probe",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, _err = await asyncio.wait_for(proc.communicate(), 30)
        return dict(json.loads(out))
    except (TimeoutError, ValueError) as e:
        if proc.returncode is None:
            proc.kill()
        why = f"probe failed: {e}"
        return {k: why for k in ("mount", "root", "pid", "net", "uid", "seccomp", "userns")}


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)
