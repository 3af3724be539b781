"""The kernel's own record of a seccomp kill: how the server names the call a Node or `http` instance was
killed for (a Python instance names it itself, `seccomp.name_refusals`).

Node and `http` processes cannot catch the SIGSYS with its details, so their filters kill
(`SECCOMP_RET_KILL_PROCESS`), which the kernel always logs as an audit record (type 1326) with the uid and
the syscall number; without auditd the record reaches the kernel log, `/dev/kmsg`. The server (root) opens
it at start, positioned at the end, and reads what is new when an instance dies by SIGSYS. Each function
runs under a uid of its own, so the uid says whose call it was. Without root, or with auditd taking the
records, the error still says SIGSYS and that the call was outside the list, without naming it.
"""

from __future__ import annotations

import errno
import os
import re

_RECORD = re.compile(rb"type=1326 .*?\buid=(\d+) .*?\bsig=(\d+) .*?\bsyscall=(\d+)")
SIGSYS = 31


def parse(record: bytes) -> tuple[int, int] | None:
    """(uid, syscall number) of a seccomp kill record of the kernel log, else None. Pure."""
    m = _RECORD.search(record)
    if m is None or int(m.group(2)) != SIGSYS:
        return None
    return int(m.group(1)), int(m.group(3))


class SeccompLog:
    """New seccomp kill records of the kernel log since the server started, by uid."""

    def __init__(self, fd: int):
        self._fd = fd
        self._last: dict[int, int] = {}

    @classmethod
    def open(cls, path: str = "/dev/kmsg") -> SeccompLog | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            os.lseek(fd, 0, os.SEEK_END)  # only records from now on
        except OSError:
            os.close(fd)
            return None
        return cls(fd)

    def refused(self, uid: int) -> int | None:
        """The syscall the kernel last killed a process of `uid` for (since the last ask), or None."""
        self._drain()
        return self._last.pop(uid, None)

    def _drain(self) -> None:
        for _ in range(100_000):  # one record per read; bounded however chatty the kernel is
            try:
                rec = os.read(self._fd, 8192)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EPIPE:  # records were overwritten before we read them: go on
                    continue
                return
            if not rec:
                return
            hit = parse(rec)
            if hit is not None:
                self._last[hit[0]] = hit[1]
                if len(self._last) > 10_000:
                    self._last.clear()

    def close(self) -> None:
        os.close(self._fd)
