"""The `dotnet` runtime: Azure Functions C# (in-process model) on Mono.

What polyfn ships is C# source: `Shims.cs`, the vendor API surface functions compile against
(`[FunctionName]`, `[HttpTrigger]`, `HttpRequest`, `IActionResult` results, `ILogger`; namespaces as Azure's),
and `Host.cs`, a program that loads the user's assembly and serves one `[FunctionName]`. An instance is the
`http` runtime's proxy (`runtimes/http/proxy.py`) running `mono PolyfnHost.exe` (pre-started: `wait`, then
its function; else `serve function.dll NAME`) and relaying invocations to it as frames on two pipes
(`link.py`), so pools, deadlines, crashes and activations work as for any http function. Compilation is
`deploy/build_dotnet.py`.

Everything Mono needs on a node is named here (`MONO_PATHS`), for a sandbox that builds its own root
file system: an instance reads these, its revision's build directory and nothing else of the host's.
"""

from __future__ import annotations

import base64
import functools
import glob
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("Shims.cs", "Host.cs", "Link.cs")
HOST_SOURCES = ("Host.cs", "Link.cs")  # PolyfnHost.exe
SHIMS_DLL = "Polyfn.Azure.Shims.dll"
HOST_EXE = "PolyfnHost.exe"
FUNCTION_DLL = "function.dll"

#: Read-only paths an instance needs for `mono` (binary, class libraries and GAC incl. Json.NET, config).
MONO_PATHS = ("/usr/bin/mono", "/usr/bin/mono-sgen", "/usr/lib/mono", "/usr/lib/cli", "/etc/mono",
              "/usr/lib/libMonoPosixHelper.so",
              "/usr/lib/libmono-native.so")

#: Class libraries the host and common functions load, compiled ahead of time once per node (with the shims):
#: JIT-compiling them at every instance start doubled its CPU time (mscorlib's own image ships with Debian).
AOT_LIBRARIES = ("System", "System.Core", "System.Configuration", "System.Xml", "Mono.Security", "System.Numerics",
                 "Microsoft.CSharp", "Newtonsoft.Json")
AOT_DIR = "aot"

#: Mono's environment in an instance: no shared perf-counter area (`/dev/shm/mono.PID`: every instance's host
#: is pid 4 of its pid namespace, and an open file there would keep the staged root from being sealed).
MONO_ENV = {"MONO_DISABLE_SHARED_AREA": "1"}

#: The Debian packages that provide the toolchain (`make toolchains` installs them).
APT_PACKAGES = ("mono-mcs", "mono-runtime", "libnewtonsoft-json-cil-dev")

#: What every C# file may use without a `using` directive: the namespaces of the Azure Functions in-process
#: template, as the .NET SDK's ImplicitUsings provide for projects (the seed's sample has no `using` lines).
IMPLICIT_USINGS = ("System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net", "System.Text",
                   "System.Threading", "System.Threading.Tasks", "Microsoft.AspNetCore.Http",
                   "Microsoft.AspNetCore.Mvc", "Microsoft.Azure.WebJobs", "Microsoft.Azure.WebJobs.Extensions.Http",
                   "Microsoft.Extensions.Logging", "Newtonsoft.Json")


@dataclass(frozen=True)
class Toolchain:
    mono: str
    mcs: str
    newtonsoft: str  # Newtonsoft.Json.dll to compile against (mono finds it in the GAC at run time)


def toolchain() -> Toolchain | None:
    """Mono's compiler, runtime and Json.NET on this node, or None when any is missing."""
    mono, mcs = shutil.which("mono"), shutil.which("mcs")
    found = sorted(glob.glob("/usr/lib/cli/Newtonsoft.Json*/Newtonsoft.Json.dll")) or sorted(
        glob.glob("/usr/lib/mono/gac/Newtonsoft.Json/*/Newtonsoft.Json.dll"))
    if not (mono and mcs and found):
        return None
    return Toolchain(mono, mcs, found[-1])


def missing_message() -> str:
    return ("C# functions need Mono on this node: install it with "
            f"`apt-get install -y {' '.join(APT_PACKAGES)}` (or `make toolchains` as root), then deploy again")


@functools.cache
def sources_digest() -> str:
    """Identifies this polyfn's shims and host and the node's Mono: their compiled copies (and the ahead-of-time
    images of the class libraries) are cached under it."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    mono = shutil.which("mono")
    if mono:
        h.update(str(os.stat(os.path.realpath(mono)).st_mtime_ns).encode())
    return h.hexdigest()[:24]


def shim_dir(data_dir: str | Path) -> Path:
    """Where the node keeps the compiled shims, host and class-library images (shared by every revision)."""
    return Path(data_dir) / "build" / ".cache" / f"dotnet-{sources_digest()}"


def host_command(mono: str, build_dir: str, function_name: str, aot_dir: str = "") -> list[str]:
    """An instance's program: the host serving `function_name` from the revision's build (with the node's
    ahead-of-time images of the class libraries when it has them)."""
    aot = [f"--aot-path={aot_dir}"] if aot_dir and os.path.isdir(aot_dir) else []
    return [mono, *aot, str(Path(build_dir) / HOST_EXE), "serve", str(Path(build_dir) / FUNCTION_DLL), function_name]


def blank_command(mono: str, shims: str) -> list[str]:
    """A pre-started host: listening with the shims loaded, waiting for its function on stdin."""
    aot = os.path.join(shims, AOT_DIR)
    return [mono, *([f"--aot-path={aot}"] if os.path.isdir(aot) else []), os.path.join(shims, HOST_EXE), "wait"]


def trigger_body(cloudevent: bytes) -> bytes:
    """A trigger's CloudEvent as the host binds it: the Azure shapes of `polyfn.events.azure` (the one place
    that knows them) for each trigger kind, as JSON; the host takes the part its function's trigger needs.
    `{"timer": TimerInfo, "blob": {name, path, uri, length, content_base64}, "messages": [{id, body, ...}]}`."""
    from polyfn.events import azure as az

    try:
        ce = json.loads(cloudevent)
    except ValueError:
        ce = {}
    if not isinstance(ce, dict):
        ce = {}
    data = ce.get("data") if isinstance(ce.get("data"), dict) else {}
    content = b""
    if data.get("content_base64"):
        try:
            content = base64.b64decode(data["content_base64"])
        except ValueError:
            content = b""
    elif isinstance(data.get("content"), str):
        content = data["content"].encode()
    blob = az.blob(ce, content)
    out = {"timer": az.timer(ce), "messages": az.queue_messages(ce),
           "blob": {"name": blob["name"], "key": str(data.get("key", "")), "uri": blob["uri"], "length": blob["length"],
                    "content_base64": base64.b64encode(content).decode()}}
    return json.dumps(out, default=str).encode()
