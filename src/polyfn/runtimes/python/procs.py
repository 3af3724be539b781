"""Process plumbing the runtime zygote and function zygotes share: dying with the parent, leaving a forked
child, waiting for a control message or a child's exit, fresh random state in every forked child."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
from typing import Any

PR_SET_PDEATHSIG = 1

_libc: Any = None


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def reseed_after_fork() -> None:
    """Give a forked child its own state of the module-level random generators a zygote may have imported.

    Python's `random` reseeds itself at fork; numpy's legacy global generator (`numpy.random.random()`, seeded
    once at import) does not, so every instance forked from a function or package zygote that imported numpy
    would draw the same "random" numbers (ids, samples, jitter). Only what is already imported is reseeded:
    a lookup when numpy is not there."""
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        try:
            np_random.seed()  # from the OS's entropy, as at import
        except Exception:  # a half-imported or replaced module: keep the fork going
            pass


def exit_child(fn: Any, *args: Any) -> None:
    """Run `fn(*args)` in a forked child and exit it without returning into the parent's code (70 on an
    exception, with its traceback on stderr)."""
    code = 0
    try:
        fn(*args)
    except BaseException:
        import traceback

        traceback.print_exc(file=sys.__stderr__)
        code = 70
    os._exit(code)


def wait_readable(ctrl: socket.socket, wake: int) -> list[Any]:
    """Block until the control socket or the SIGCHLD wake-up pipe is readable; the pipe is drained (its
    bytes only say "reap now"). The serve loop of the runtime zygote and of function zygotes."""
    while True:
        try:
            readable, _, _ = select.select([ctrl, wake], [], [])
            break
        except InterruptedError:
            continue
    if wake in readable:
        try:
            while os.read(wake, 512):
                pass
        except BlockingIOError:
            pass
    return readable
