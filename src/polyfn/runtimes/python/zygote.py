"""The Python zygote: a process that has imported polyfn's runtime and common libraries once, and forks
a new instance per request, so a cold start costs a fork instead of an interpreter start.

Control channel: a SOCK_SEQPACKET socket inherited from the server (fd in `$POLYFN_ZYGOTE_FD`). Each packet
is one msgpack message; a `Spawn` carries the instance's own connection as an attached file descriptor
(SCM_RIGHTS), so the child talks to the server directly and the zygote stays out of the data path. The
zygote is the parent of every instance: it reaps them and reports each exit status (`Exited`), which is how
the server can tell callers "killed by signal 9" or "exit code 3".

Orphans are impossible by construction: the zygote asks the kernel to SIGKILL it when the server dies
(PR_SET_PDEATHSIG), and every instance asks the same of the zygote.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

import msgspec

from polyfn.protocol.zygote import (
    PACKET_MAX,
    Exited,
    PackageZygote,
    Spawn,
    Spawned,
    SpawnFailed,
    ToRuntimeZygote,
    ZygoteReady,
)
from polyfn.runtimes.python import prefork
from polyfn.runtimes.python.procs import exit_child, reseed_after_fork, set_pdeathsig, wait_readable


def preload() -> None:
    """Import what most functions need, once, before any fork. Memory is then shared copy-on-write."""
    import asyncio  # noqa: F401
    import base64  # noqa: F401
    import concurrent.futures  # noqa: F401
    import dataclasses  # noqa: F401
    import datetime  # noqa: F401
    import decimal  # noqa: F401
    import email.utils  # noqa: F401
    import hashlib  # noqa: F401
    import http.client  # noqa: F401
    import json  # noqa: F401
    import logging  # noqa: F401
    import random  # noqa: F401
    import re  # noqa: F401
    import typing  # noqa: F401
    import urllib.parse  # noqa: F401
    import uuid  # noqa: F401

    import polyfn.runtimes.python.fnzygote  # (a blank that entered its root ahead cannot read polyfn's files)
    import polyfn.runtimes.python.instance
    import polyfn.runtimes.python.startup
    import polyfn.sandbox
    import polyfn.sandbox.cgroups
    import polyfn.sandbox.limits
    import polyfn.sandbox.linux
    import polyfn.sandbox.mounts
    import polyfn.sandbox.namespaces
    import polyfn.sandbox.relay
    import polyfn.sandbox.rootfs
    import polyfn.sandbox.seccomp
    import polyfn.sandbox.veth
    from polyfn.runtimes.python import flavors

    # msgspec resolves a Struct's annotations through its module by name the first time it decodes one;
    # an instance forgets polyfn's modules by name before user code runs, so do it now, for all of them
    for struct in (Spawn, polyfn.runtimes.python.startup.InstanceSpec, polyfn.sandbox.SandboxPlan):
        msgspec.msgpack.Decoder(struct)
    try:  # the BPF program is the same for every instance: build it once, before any fork
        polyfn.sandbox.seccomp.build("python")
        polyfn.sandbox.seccomp.names()
    except (KeyError, OSError):
        pass
    polyfn.sandbox.linux.preload()
    if os.environ.get("POLYFN_SANDBOX_ROOT"):  # the blanks' staged root: parsed once, here
        try:
            cfg, _ = polyfn.sandbox.staged_root(os.environ["POLYFN_SANDBOX_ROOT"])
            if cfg.get("ahead"):  # blanks enter it before their function is known (sandbox.enter_ahead)
                polyfn.sandbox.AHEAD = True
                polyfn.sandbox.HOST_RELAY = str(cfg.get("relay", ""))
        except (ValueError, KeyError, TypeError):
            pass  # reported by each blank

    for name, mod in flavors.FLAVORS.items():
        if name not in flavors.HEAVY:
            __import__(mod)
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass


def preload_vendors() -> None:
    """The vendor libraries unmodified functions import (Flask, functions-framework, azure.functions):
    about half a second of imports, done once after the zygote reported ready (so the server does not
    wait for them) and before the first fork (so every instance has them for free)."""
    from polyfn.runtimes.python import flavors

    for name in flavors.HEAVY:
        try:
            __import__(flavors.FLAVORS[name])
        except ImportError as e:  # reported when a function of that flavor starts
            print(f"zygote: flavor {name} unavailable: {e}", file=sys.stderr)
    for mod in flavors.VENDOR_MODULES:
        try:
            __import__(mod)
        except ImportError:
            pass


def _detach(ctrl: socket.socket, wake: tuple[int, int]) -> None:
    """In a forked child: drop the zygote's plumbing and signal handling, die with the zygote."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.close(wake[0])
    os.close(wake[1])
    ctrl.close()
    os.setsid()
    set_pdeathsig()


#: descriptors a spawn request may carry: the connection, then a detached copy of each of the function's paths
#: (its code, dependencies and the interpreter's exposed directories: a few)
MAX_FDS = 16


def _become_instance(spawn_raw: bytes, fd: int, info: str, prepared: Any) -> None:
    from polyfn.runtimes.python import instance, startup

    req = msgspec.msgpack.decode(spawn_raw, type=Spawn)
    spec = msgspec.convert(req.spec, startup.InstanceSpec)
    if startup.LAYER and spec.deps_dir != startup.LAYER:  # a package zygote's modules need their layer bound
        raise RuntimeError(f"package zygote of {startup.LAYER}: asked to start a revision of {spec.deps_dir!r}")
    if spec.zygote:  # this child becomes the revision's function zygote; `fd` is its control channel
        from polyfn.runtimes.python import fnzygote

        fnzygote.main(spec, socket.socket(fileno=fd), info, prepared)
        return
    instance.main(spec, socket.socket(fileno=fd), info, prepared)


def _prepare() -> Any:
    """Cgroups and namespaces for the instance this child will become (see `polyfn.sandbox.prepare`).
    With a pid namespace this process stays behind as the supervisor and only its child returns."""
    from polyfn.sandbox import prepare

    return prepare(os.environ, set_pdeathsig)


def _blank(conn: socket.socket, info: str) -> None:
    """A pre-forked child: pay for cgroups and namespaces now, then wait for a function to become."""
    from polyfn.runtimes.python import startup

    prepared = _prepare()
    for note in prepared.notes:
        print(f"zygote: blank {os.getpid()}: {note}", file=sys.stderr)
    startup.clean_environ()  # (function-independent steps of `startup.prepare_process`, done ahead)
    startup.stage_imports(prepared)
    if prepared.root_staged:  # last: nothing of the host's files is in reach after it
        from polyfn import sandbox

        sandbox.enter_ahead(prepared)
        for note in prepared.notes[-1:] if not prepared.entered and sandbox.AHEAD else ():
            print(f"zygote: blank {os.getpid()}: {note}", file=sys.stderr)
    msg, fds, _, _ = socket.recv_fds(conn, PACKET_MAX, MAX_FDS)
    conn.close()
    if not msg or not fds:
        return
    prepared.trees = fds[1:]  # detached copies of the function's paths (a root entered ahead attaches them)
    _become_instance(msg, fds[0], info + ", pre-forked", prepared)


def _direct(msg: bytes, fds: list[int], info: str) -> None:
    """No blank was left: prepare on the cold-start path (the root is entered at spawn: the copies of the
    function's paths a request brings for a blank are not used)."""
    for fd in fds[1:]:
        os.close(fd)
    _become_instance(msg, fds[0], info, _prepare())


def main() -> None:
    t0 = time.perf_counter()
    ctrl = socket.socket(fileno=int(os.environ["POLYFN_ZYGOTE_FD"]))
    set_pdeathsig()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which stops us in order
    os.register_at_fork(after_in_child=reseed_after_fork)  # inherited: every zygote and instance below us
    preload()
    gc.collect()
    gc.freeze()  # keep the preloaded heap out of the collector's way so forks share it
    preload_ms = (time.perf_counter() - t0) * 1000
    serve(ctrl, f"fork from python zygote (preloaded in {preload_ms:.0f} ms)", preload_ms, vendors=True)


def serve(ctrl: socket.socket, info: str, preload_ms: float, vendors: bool = False) -> None:
    """Fork instances on request (`Spawn`), through pre-forked blanks; the runtime zygote also forks package
    zygotes (`PackageZygote`, runtimes/python/pkgzygote.py), which serve the same way."""
    blank_target = int(os.environ.get("POLYFN_ZYGOTE_BLANKS", "2"))
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    wake = (rfd, wfd)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(ToRuntimeZygote)
    blanks: deque[tuple[int, socket.socket]] = deque()
    blank_pids: set[int] = set()

    def fork_blank() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        prefork.before_fork()
        try:
            pid = os.fork()
        except OSError as e:
            print(f"zygote: cannot fork a blank: {e}", file=sys.stderr)
            ours.close()
            theirs.close()
            return
        if pid == 0:
            ours.close()
            for _, other in blanks:
                other.close()
            _detach(ctrl, wake)
            exit_child(_blank, theirs, info)
        theirs.close()
        blanks.append((pid, ours))
        blank_pids.add(pid)

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in blank_pids:  # a blank died before it was used: not an instance, don't report
                blank_pids.discard(pid)
                for item in list(blanks):
                    if item[0] == pid:
                        blanks.remove(item)
                        item[1].close()
                continue
            ctrl.send(enc.encode(Exited(pid, status)))

    def spawn_from_blank(msg: bytes, fds: list[int]) -> int:
        while blanks:
            pid, conn = blanks.popleft()
            blank_pids.discard(pid)
            try:
                socket.send_fds(conn, [msg], fds)
                return pid
            except OSError:
                continue
            finally:
                conn.close()
        return 0

    ctrl.send(enc.encode(ZygoteReady(os.getpid(), preload_ms)))
    if vendors and os.environ.get("POLYFN_ZYGOTE_VENDORS", "1") != "0":
        preload_vendors()
        gc.collect()
        gc.freeze()
    from polyfn.runtimes.python import startup

    startup.snapshot_modules()
    prefork.fill_pools()  # last: the snapshot's temporary objects leave holes too
    for _ in range(blank_target):
        fork_blank()

    while True:
        readable = wait_readable(ctrl, rfd)
        if rfd in readable:
            reap()
        if ctrl not in readable:
            continue
        msg, fds, _, _ = socket.recv_fds(ctrl, PACKET_MAX, MAX_FDS)
        if not msg:
            return  # the server went away
        try:
            req = dec.decode(msg)
        except msgspec.DecodeError as e:
            for fd in fds:
                os.close(fd)
            print(f"zygote: bad control message: {e}", file=sys.stderr)
            continue
        if len(fds) != 1 and (not fds or isinstance(req, PackageZygote)):
            for fd in fds:
                os.close(fd)
            ctrl.send(enc.encode(SpawnFailed(req.req, "spawn request without a connection")))
            continue
        pid = 0 if isinstance(req, PackageZygote) else spawn_from_blank(msg, fds)
        if pid == 0:
            prefork.before_fork()
            try:
                pid = os.fork()
            except OSError as e:
                for fd in fds:
                    os.close(fd)
                ctrl.send(enc.encode(SpawnFailed(req.req, f"fork failed: {e}")))
                continue
            if pid == 0:
                for _, other in blanks:
                    other.close()
                _detach(ctrl, wake)
                if isinstance(req, PackageZygote):
                    from polyfn.runtimes.python import pkgzygote

                    exit_child(pkgzygote.main, req, socket.socket(fileno=fds[0]), serve)
                exit_child(_direct, msg, fds, info)
        for fd in fds:
            os.close(fd)
        ctrl.send(enc.encode(Spawned(req.req, pid)))
        while len(blanks) < blank_target:
            fork_blank()


if __name__ == "__main__":
    main()
