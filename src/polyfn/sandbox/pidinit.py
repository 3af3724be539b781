"""The native helper of the pid namespace (`pidinit.c`): the supervisor and the namespace's init of every
sandboxed instance exec it instead of staying forked Python interpreters (sandbox/namespaces.py), which
saves an idle instance two interpreters' private pages.

Built once per version of its source with the system's C compiler (statically when the C library allows),
next to this module — or, when the package is not writable, in the node's data dir — and found again by
the source's digest. A node without a compiler, or with `POLYFN_NATIVE_INIT=false`, keeps the Python
helpers (same behaviour, more memory); `make native` builds it at install time.

The program runs as root in every instance's namespaces, so a copy is only used when this user owns it and
nobody else can write it or its directory.

    python -m polyfn.sandbox.pidinit          # build (if needed) and print its path
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("pidinit.c")
BUILD_DIR = Path(__file__).with_name("_native")
USAGE_EXIT = 64  # what the program answers when run without arguments (the self-check below)


def _name() -> str:
    return "pidinit-" + hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]


def _trusted(path: Path) -> bool:
    """Ours and written by nobody else: the file and the directory it sits in."""
    uid = os.geteuid()
    try:
        for p in (path, path.parent):
            st = p.stat()
            if st.st_uid != uid or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return False
        st = path.stat()
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & stat.S_IXUSR)
    except OSError:
        return False


def _works(path: Path) -> bool:
    try:
        return subprocess.run([str(path)], capture_output=True, timeout=10).returncode == USAGE_EXIT
    except (OSError, subprocess.SubprocessError):
        return False


def _compile(cc: str, out: Path) -> str:
    """Build into `out`; "" or why not."""
    why = ""
    for flags in (["-static"], []):  # static: nothing to load at exec, text shared by every instance
        try:
            r = subprocess.run([cc, *flags, "-Os", "-s", "-o", str(out), str(SOURCE)], capture_output=True,
                               text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            return f"{cc}: {e}"
        if r.returncode == 0:
            return ""
        why = (r.stderr.strip().splitlines() or [f"{cc} exited {r.returncode}"])[-1]
    return why


def build(fallback_dir: Path | None = None) -> tuple[str, str]:
    """(path of the program, "") — built now if no trusted copy exists — or ("", why it cannot be had)."""
    name = _name()
    dirs = [BUILD_DIR] + ([fallback_dir] if fallback_dir is not None else [])
    for d in dirs:
        if _trusted(d / name):
            return str(d / name), ""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "", "no C compiler (cc)"
    why = ""
    for d in dirs:
        path = d / name
        tmp = d / f".{name}.{os.getpid()}"
        try:
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
            why = _compile(cc, tmp)
            if why:
                continue
            os.chmod(tmp, 0o755)
            if not _works(tmp):
                why = f"{tmp} does not run here"
                continue
            os.replace(tmp, path)  # atomic: servers building at once each install a whole program
        except OSError as e:
            why = f"{d}: {e.strerror or e}"
            continue
        finally:
            tmp.unlink(missing_ok=True)
        if _trusted(path):
            return str(path), ""
        why = f"{path} is writable by others"
    return "", why


if __name__ == "__main__":
    import sys

    found, reason = build()
    print(found or f"not built: {reason}", file=sys.stdout if found else sys.stderr)
    sys.exit(0 if found else 1)
