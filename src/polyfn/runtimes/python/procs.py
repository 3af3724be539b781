"""Process plumbing the runtime zygote and function zygotes share: dying with the parent, leaving a forked
child, waiting for a control message or a child's exit."""

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
