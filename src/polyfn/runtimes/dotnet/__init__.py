"""The `dotnet` runtime: Azure Functions C# (in-process model) on Mono.

What polyfn ships is C# source: `Shims.cs`, the vendor API surface functions compile against
(`[FunctionName]`, `[HttpTrigger]`, `HttpRequest`, `IActionResult` results, `ILogger`; namespaces as Azure's),
and `Host.cs`, a program that loads the user's assembly and serves one `[FunctionName]` over HTTP on
`$PORT`. An instance is the `http` runtime's proxy (`runtimes/http/proxy.py`) running
`mono PolyfnHost.exe serve function.dll NAME`, so pools, deadlines, crashes and activations work as for
any http function. Compilation is `deploy/build_dotnet.py`.

Everything Mono needs on a node is named here (`MONO_PATHS`), for a sandbox that builds its own root
file system: an instance reads these, its revision's build directory and nothing else of the host's.
"""

from __future__ import annotations

import glob
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("Shims.cs", "Host.cs")
SHIMS_DLL = "Polyfn.Azure.Shims.dll"
HOST_EXE = "PolyfnHost.exe"
FUNCTION_DLL = "function.dll"

#: Read-only paths an instance needs for `mono` (binary, class libraries and GAC incl. Json.NET, config).
MONO_PATHS = ("/usr/bin/mono", "/usr/bin/mono-sgen", "/usr/lib/mono", "/usr/lib/cli", "/etc/mono",
              "/usr/lib/libMonoPosixHelper.so",
              "/usr/lib/libmono-native.so")

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


def sources_digest() -> str:
    """Identifies this polyfn's shims and host: their compiled copies are cached under it."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    return h.hexdigest()[:24]


def host_command(mono: str, build_dir: str, function_name: str) -> list[str]:
    """An instance's program: the host serving `function_name` from the revision's build."""
    return [mono, str(Path(build_dir) / HOST_EXE), "serve", str(Path(build_dir) / FUNCTION_DLL), function_name]
