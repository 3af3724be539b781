"""One rule for what a test does when something it needs is missing: skip with the reason on a
developer's machine, fail under `CI=true` (where the README's tools, the services and, as root, every
sandbox layer are expected). Tests ask the kernel or the tool itself, never polyfn's own view of itself."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

CI = os.environ.get("CI") == "true"
ROOT = os.geteuid() == 0


def missing(reason: str) -> NoReturn:
    """Skip (or, under CI=true, fail) the calling test because `reason`."""
    if CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def unless(available: bool, reason: str) -> pytest.MarkDecorator:
    """A mark: skip when not `available`, except under CI=true, where the test runs (and fails)."""
    return pytest.mark.skipif(not available and not CI, reason=reason)


def _run(*argv: str) -> str:
    """"" when the command succeeds, else its error (asked of util-linux, not of polyfn)."""
    import shutil
    import subprocess

    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not installed"
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return "" if p.returncode == 0 else (p.stderr.strip() or f"exit {p.returncode}")


def _cgroup_controller(name: str) -> str:
    if os.path.isdir(f"/sys/fs/cgroup/{name}"):  # v1 hierarchy
        return ""
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return "" if name in f.read().split() else f"no {name} controller in /sys/fs/cgroup"
    except OSError as e:
        return f"no cgroup hierarchy with {name}: {e}"


def kernel_lacks(layer: str) -> str:
    """Why this host cannot provide sandbox `layer` ("" when it can), asked of the kernel and util-linux
    directly: a test must not learn from polyfn's own probe whether polyfn's layer may be missing."""
    userns = () if ROOT else ("--user", "--map-root-user")
    if layer == "mount":
        return _run("unshare", *userns, "--mount", "true")
    if layer == "pid":
        return _run("unshare", *userns, "--mount", "--pid", "--fork", "--mount-proc", "true")
    if layer == "net":
        return _run("unshare", *userns, "--net", "true")
    if layer == "userns":
        return _run("unshare", "--user", "true")
    if layer == "seccomp":
        import ctypes.util

        try:
            with open("/proc/sys/kernel/seccomp/actions_avail") as f:
                actions = f.read().split()
        except OSError:
            return "the kernel has no seccomp filter support (/proc/sys/kernel/seccomp/actions_avail)"
        if "trap" not in actions:
            return f"the kernel's seccomp lacks the trap action ({actions})"
        return "" if ctypes.util.find_library("seccomp") else "libseccomp is not installed (apt install libseccomp2)"
    if layer in ("cgroup", "pids"):
        if not ROOT:
            return "cgroups need root"
        return _cgroup_controller("memory" if layer == "cgroup" else "pids")
    if layer == "uid":
        return "" if ROOT else "a uid of its own per function needs root"
    if layer == "kmsg":  # the kernel log, where seccomp kills are recorded (read by polyfn as root)
        try:
            os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK))
        except OSError as e:
            return f"/dev/kmsg: {e.strerror}"
        try:
            with open("/proc/sys/kernel/seccomp/actions_logged") as f:
                return "" if "kill_process" in f.read().split() else "the kernel does not log seccomp kills"
        except OSError as e:
            return str(e)
    raise ValueError(layer)


def layer(name: str) -> pytest.MarkDecorator:
    """A mark for a test of sandbox layer `name`: skip where the kernel cannot provide it, except under
    CI=true, where the test runs and fails."""
    why = kernel_lacks(name)
    return unless(not why, f"sandbox layer {name}: {why}")


def module(name: str, reason: str = "") -> object:
    """`pytest.importorskip` for the test extras (`pip install -e '.[test]'`): under CI=true a missing
    module is an error, not a skip."""
    if CI:
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name, reason=reason or None)


def tool(name: str) -> str:
    """The path of a tool the README installs (node, npm, openssl …); skip without it, fail under CI=true."""
    import shutil

    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path
