"""The seccomp allow-list's own cost: a system call under each runtime's filter vs. the same call with no
filter, in the same run (the ceiling is "no filter"), and what building a program costs (paid once per
zygote and once per runtime in the server, which hands the program to its spawner).

    .venv/bin/python bench/seccomp_filter.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

CALLS = 200_000


def per_call_ns(profile: str) -> float:
    """ns per `getppid()` (a real system call each time) in a fresh child, under `profile` ("" = none)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        from polyfn.sandbox import linux, seccomp

        if profile:
            linux.set_no_new_privs()
            seccomp.install(profile)
        best = float("inf")
        for _ in range(5):
            t0 = time.process_time_ns()
            for _ in range(CALLS):
                os.getppid()
            best = min(best, (time.process_time_ns() - t0) / CALLS)
        os.write(w, str(best).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 100)
    os.waitpid(pid, 0)
    return float(out)


def build_ms() -> float:
    code = ("import time; t=time.process_time(); from polyfn.sandbox import seccomp; seccomp.build('http'); "
            "print((time.process_time()-t)*1000)")
    return min(float(subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(5))


def main() -> None:
    print(f"getppid() x {CALLS}, best of 5 in CPU time (the machine is shared), each in a fresh child")
    none = per_call_ns("")
    print(f"  no filter         {none:7.1f} ns/call (ceiling)")
    for profile in ("python", "node", "http"):
        ns = per_call_ns(profile)
        print(f"  {profile:6} allow-list {ns:7.1f} ns/call  ({ns / none:.2f}x the ceiling, +{ns - none:.1f} ns)")
    print(f"import + build of the http program in a fresh interpreter: {build_ms():.1f} ms CPU (best of 5)")


if __name__ == "__main__":
    main()
