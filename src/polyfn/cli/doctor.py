"""`polyfn doctor`: what isolation this host gives functions, layer by layer, and why a layer is missing.

It probes locally (the same probe `polyfn serve` runs at start), so it works without a server. It never
fails because a layer is missing: reporting that is its job.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.text import Text

from polyfn.cli.output import out

LAYERS = (
    ("cgroup", "memory / pids / CPU limits per instance"),
    ("mount", "private /tmp, polyfn's data dir and other functions' code hidden"),
    ("root", "a root filesystem of its own: read-only system dirs, runtime, provided packages, own code"),
    ("pid", "other processes invisible and unsignalable"),
    ("net", "a network namespace per instance (`none`: loopback only; `polyfn`: only polyfn's API and S3)"),
    ("egress", "default network: the outside world, never the host, its loopback or private ranges"),
    ("uid", "a separate unprivileged uid per function"),
    ("seccomp", "an allow-list of system calls per runtime; mount, ptrace, bpf, keyctl … refused"),
    ("rlimits", "open files, file size, core dumps"),
)


def network_policy(res: dict[str, Any]) -> str:
    """How `--network` is enforced here, in one line."""
    if res.get("net"):
        return (f"unavailable ({res['net']}): every function runs on the host network, the default included "
                "(it reaches the node's loopback services); `--network none` and `--network polyfn` functions fail "
                "to start (fail closed)")
    how = "a network namespace per instance"
    if os.geteuid() != 0:
        how += ", made inside an unprivileged user namespace"
    if res.get("egress"):
        default = (f"the default `egress` is degraded ({res['egress']}): such functions reach only polyfn's API, "
                   "S3 and their `--allow-net` entries, not the internet")
    else:
        default = ("the default `egress`: a veth pair + NAT under the nftables table `inet polyfn`, refusing the "
                   "host, loopback, link-local (metadata), private ranges and the node's own networks")
    return (f"{how}; {default}; polyfn's API and S3 are relayed into every namespace (no route to the host); "
            "`--allow-net HOST:PORT` relays one host service, `--allow-net CIDR[:PORTS]` opens a private range "
            "(egress only; never loopback, link-local or the node's own endpoints); `--network host` (explicit) "
            "reaches everything "
            "the node can, with a warning in `polyfn describe`")


def build_policy(res: dict[str, Any]) -> str:
    """How deploy-time builds (pip, npm, go) run here, in one line (deploy/isolate.py)."""
    off = "build" in os.environ.get("POLYFN_SANDBOX_DISABLE", "").replace(" ", "").split(",")
    if os.geteuid() != 0 or res.get("mount") or off:
        why = ("not root" if os.geteuid() != 0 else f"no mount namespace: {res['mount']}" if res.get("mount") else
               "POLYFN_SANDBOX_DISABLE=build")
        return (f"deploy builds (pip, npm, go) run as the server's user with its environment ({why}): a deployer's "
                "requirements.txt or setup.py can read what that user can, the data dir included")
    net = "the egress network" if not res.get("egress") else "the host network (no egress: it reaches loopback services)"
    return ("deploy builds (pip, npm, go) run as a uid of their own, the data dir hidden, with a scrubbed environment, "
            f"on {net} (POLYFN_SANDBOX_DISABLE=build turns this off)")


def seccomp_mode(res: dict[str, Any]) -> str:
    from polyfn.sandbox import seccomp

    if res.get("seccomp"):
        return f"off ({res['seccomp']}): functions may make any system call their uid allows"
    try:
        return seccomp.mode()
    except OSError as e:
        return f"off ({e})"


def diagnose() -> dict[str, Any]:
    from polyfn.sandbox.cgroups import CgroupBase
    from polyfn.sandbox.probe import probe

    res: dict[str, Any] = dict(probe())
    if os.geteuid() == 0:
        base, why = CgroupBase.detect(f"polyfn-doctor-{os.getpid()}")
        if base is not None:
            res["cgroup"] = ""
            res["cgroup_detail"] = why
            base.remove_base()
        else:
            res["cgroup"] = why
    else:
        res["cgroup"] = "not root"
    res["rlimits"] = ""
    from polyfn.sandbox import egress

    res["egress"] = (res.get("net") and "needs network namespaces") or egress.unavailable()
    res["network_policy"] = network_policy(res)
    res["seccomp_mode"] = seccomp_mode(res)
    res["builds"] = build_policy(res)
    res["launched_runtimes"] = ("node and http instances get the same layers as Python ones (polyfn.sandbox.spawn "
                                "applies them before exec; Node switches to its uid itself, before user code)")
    available = [name for name, _ in LAYERS if not res.get(name)]
    if all(not res.get(n) for n in ("cgroup", "mount", "root", "pid", "net", "egress", "uid", "seccomp")):
        level = "full"
    elif "mount" in available or "uid" in available:
        level = "partial"
    else:
        level = "rlimits only"
    res["level"] = level
    res["available"] = available
    return res


def doctor(
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                         help="Print the findings as JSON.")] = False,
) -> None:
    """Show which sandbox layers this host allows for function instances, and why any is missing."""
    res = diagnose()
    if as_json:
        typer.echo(json.dumps(res))
        return
    console = out()
    console.print(f"isolation level: {res['level']}")
    for name, what in LAYERS:
        why = res.get(name, "")
        mark = Text("  ok   ", style="green") if not why else Text("  off  ", style="yellow")
        line = Text.assemble(mark, f"{name:8} {what}")
        if why:
            line.append(f"  ({why})", style="dim")
        elif name == "cgroup" and res.get("cgroup_detail"):
            line.append(f"  ({res['cgroup_detail']})", style="dim")
        console.print(line)
    console.print(Text(f"network policy: {res['network_policy']}", style="dim"))
    console.print(Text(res["launched_runtimes"], style="dim"))
    console.print(Text(res["builds"], style="dim"))
    console.print(Text(f"seccomp mode: {res['seccomp_mode']}", style="dim"))
    if os.geteuid() != 0:
        if not res.get("userns"):
            msg = ("not root: mount, pid and (for `--network none`) network namespaces come from an unprivileged "
                   "user namespace; there is no per-function uid and no cgroup (memory is bounded by RLIMIT_AS). "
                   "Run `polyfn serve` as root in a VM or container of its own for the full sandbox.")
        else:
            msg = (f"not root and no user namespaces ({res['userns']}): only rlimits apply. Run `polyfn serve` "
                   "as root in a VM or container of its own for the sandbox.")
        console.print(Text(msg, style="yellow"))
    console.print(Text("there is no VM boundary: a kernel exploit escapes every layer (see docs/security.md)",
                       style="dim"))
