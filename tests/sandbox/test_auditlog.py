"""The kernel log's seccomp kill records: parsed (a table of real record lines), and read for real as root."""

from __future__ import annotations

import ctypes
import os
import signal

import pytest

from polyfn.sandbox import auditlog, linux, seccomp

from .. import needs
from ..e2e.conftest import wait_until

KILL = (b"6,1052,1835815012,-;audit: type=1326 audit(1796576528.318:10): auid=4294967295 uid=200003 gid=200003 "
        b"ses=4294967295 pid=29766 comm=\"python\" exe=\"/usr/bin/python3.11\" sig=31 arch=c000003e syscall=312 "
        b"compat=0 ip=0x7f073ed1f829 code=0x80000000")


@pytest.mark.parametrize(("record", "expect"), [
    (KILL, (200003, 312)),
    (KILL.replace(b"sig=31", b"sig=0"), None),  # an errno action logged on request: not a kill
    (KILL.replace(b"type=1326", b"type=1400"), None),  # another audit record (AppArmor)
    (b"6,1,2,-;EXT4-fs (vda): mounted filesystem", None),
    (KILL.replace(b" uid=200003", b" uid=0"), (0, 312)),  # the auid= before it is not the uid
])
def test_parse(record: bytes, expect: tuple[int, int] | None) -> None:
    assert auditlog.parse(record) == expect


def test_a_kill_is_read_back_by_uid() -> None:
    """A child under the node list (which kills) makes a refused call as uid 54321: the log names it."""
    if not needs.ROOT:
        needs.missing("reading /dev/kmsg and switching uid need root")
    if why := needs.kernel_lacks("kmsg") or needs.kernel_lacks("seccomp"):
        needs.missing(why)
    log = auditlog.SeccompLog.open()
    assert log is not None
    uid = 54321
    assert log.refused(uid) is None  # opened at the end: nothing older is reported
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            linux.set_no_new_privs()
            seccomp.install("node")
            ctypes.CDLL(None).syscall(seccomp.library().seccomp_syscall_resolve_name(b"kcmp"), 0, 0, 0, 0, 0)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, status
    found: list[int] = []
    # the kernel's audit thread prints the record a moment after the kill: wait for it to appear
    assert wait_until(lambda: found.append(log.refused(uid) or -1) or found[-1] != -1, 5)
    assert seccomp.names().get(found[-1]) == "kcmp"
    assert log.refused(uid) is None  # each record is reported once
    log.close()
