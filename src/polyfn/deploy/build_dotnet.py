"""Deploy-time build of C# Azure functions (the `dotnet` runtime) with Mono's `mcs`.

- `shims()`: polyfn's shim assembly and host program (runtimes/dotnet/*.cs), compiled once per node into
  `build/.cache/dotnet-<hash of their sources>/`, with ahead-of-time images of them and of the class
  libraries they load (`aot/`; `mono --aot`, when binutils are there: half the CPU of an instance start).
- `build()`: the upload's `.cs` files into `build/<code hash>/function.dll`, beside copies of the shims and the
  host (the instance's whole program in one directory the sandbox can bind). Every file gets the Azure
  template's namespaces as implicit usings, then a `#line 1` directive, so compiler messages keep the file's
  own lines. Errors are `file:line:column: error CSnnnn: ...` in a `build_failed` 400; a type polyfn does
  not provide (a binding it does not support) is named there, at deploy, never at the first call. Then the
  host's `describe` checks the deployed function's parameters (`unsupported_binding`).

The upload's steps — `mcs` on its sources, `mono --aot` of its assembly, the host's `describe` of it — take the
deployer's input, so they run in the build sandbox (deploy/isolate.py: a uid of its own, the data dir hidden, a
scrubbed environment), as pip, npm and go do: `[assembly: AssemblyKeyFile("/etc/shadow")]` makes mcs read a
file, and a source's name is never an option (`./` in front: a file named `-resource:/etc/shadow,x.cs` or
`@opts.cs` would otherwise make mcs embed a file in the assembly or read more options). The shims are
polyfn's own sources and compile as the server. The result is sealed (root's, read-only to others) and
polyfn's shim and host copies are added to it as root, never through what the build left.

Both cache by content and publish a temp directory by rename, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polyfn.deploy import isolate
from polyfn.deploy.archive import remove_tree
from polyfn.deploy.detect_dotnet import cs_files
from polyfn.deploy.errors import DeployError
from polyfn.deploy.isolate import BuildSandbox, Workspace, run_streaming
from polyfn.runtimes import dotnet

_locks: dict[str, asyncio.Lock] = {}
_MCS_MESSAGE = re.compile(r"^(?P<file>.+?)\((?P<line>\d+),(?P<col>\d+)\): (?P<rest>(?:error|warning) CS\d+: .*)$")
#: Warnings the implicit usings cause (a `using` the file also has) and the template's `async` Run without await.
_NOWARN = "105,1998"


def _toolchain() -> dotnet.Toolchain:
    tc = dotnet.toolchain()
    if tc is None:
        raise DeployError("build_failed", "this is C# code but " + dotnet.missing_message())
    return tc


def compiler_messages(lines: list[str]) -> list[str]:
    """mcs's `file(line,col): error CS…` as `file:line:column: error CS…` (what editors and people read; the
    `./` every source is named with to mcs left out)."""
    out = []
    for line in lines:
        m = _MCS_MESSAGE.match(line)
        out.append(f"{m['file'].removeprefix('./')}:{m['line']}:{m['col']}: {m['rest']}" if m else line)
    return out


def _publish(tmp: Path, dest: Path) -> None:
    if dest.exists():
        remove_tree(dest)
    tmp.rename(dest)


async def shims(data_dir: Path, progress: Callable[[str], None]) -> Path:
    """The directory holding the compiled shim assembly and host program for this polyfn."""
    tc = _toolchain()
    dest = dotnet.shim_dir(data_dir)
    async with _locks.setdefault(str(dest), asyncio.Lock()):
        if (dest / dotnet.HOST_EXE).exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
        tmp.chmod(0o755)
        progress("build: compiling polyfn's Azure Functions shims (once per node)")
        steps = (["-target:library", f"-r:{tc.newtonsoft}", "-r:Microsoft.CSharp.dll",
                  f"-out:{tmp / dotnet.SHIMS_DLL}", str(dotnet.HERE / "Shims.cs")],
                 ["-target:exe", f"-r:{tc.newtonsoft}", f"-r:{tmp / dotnet.SHIMS_DLL}", "-r:Microsoft.CSharp.dll",
                  f"-out:{tmp / dotnet.HOST_EXE}", *(str(dotnet.HERE / name) for name in dotnet.HOST_SOURCES)])
        for args in steps:
            code, tail = await run_streaming([tc.mcs, *args], tmp, dict(os.environ), lambda _m: None)
            if code != 0:
                remove_tree(tmp)
                raise DeployError("build_failed", "polyfn's C# shims do not compile with this Mono:\n" + "\n".join(tail),
                                  500)
        progress("build: compiling the class libraries ahead of time (once per node)")
        aot = tmp / dotnet.AOT_DIR
        aot.mkdir()
        for lib in dotnet.AOT_LIBRARIES:
            found = sorted(glob.glob(f"/usr/lib/mono/gac/{lib}/*/{lib}.dll"))
            if found:
                await _aot(tc, Path(found[-1]), aot / f"{lib}.dll.so", progress)
        for name in (dotnet.SHIMS_DLL, dotnet.HOST_EXE):
            await _aot(tc, tmp / name, tmp / f"{name}.so", progress)
        _publish(tmp, dest)
        return dest


async def _aot(tc: dotnet.Toolchain, assembly: Path, out: Path, progress: Callable[[str], None]) -> bool:
    """`mono --aot` (needs binutils); without the image the assembly is compiled just in time, only slower."""
    code, tail = await run_streaming([tc.mono, f"--aot=outfile={out}", str(assembly)], out.parent, dict(os.environ),
                                     lambda _m: None)
    if code != 0:
        progress(f"build: no ahead-of-time image of {assembly.name} (it will be compiled just in time): "
                 + (tail[-1] if tail else f"exit {code}"))
    return code == 0


def implicit_usings(path: str, source: bytes) -> bytes:
    """`source` with the implicit usings in front and its own line numbering kept."""
    head = " ".join(f"using {ns};" for ns in dotnet.IMPLICIT_USINGS)
    text = source.decode("utf-8-sig", "replace")
    return f"{head}\n#line 1 \"{path}\"\n{text}".encode()


async def build(files: dict[str, bytes], dest: Path, data_dir: Path, handler: str,
                progress: Callable[[str], None], builds: BuildSandbox) -> Path:
    """Compile the upload into `dest` (cached by code hash) and check `handler`'s bindings, both in `builds`."""
    tc = _toolchain()
    shim_dir = await shims(data_dir, progress)  # also after an upgrade of polyfn: the pre-started hosts run these
    async with _locks.setdefault(str(dest), asyncio.Lock()):
        if not is_current(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            async with builds.workspace(dest.parent) as ws:
                out = await _compile(tc, files, ws, builds, shim_dir, progress)
                _publish(out, dest)
        else:
            progress(f"build: using cached C# build {dest.name[:12]}")
    await check(tc, dest, handler, builds)
    return dest


STAMP = ".shims"
#: what the host's `describe` said of the build's assembly (written by the server with the build: a cached build
#: is checked without loading the assembly again)
DESCRIBED = ".describe.json"
_DESCRIBE_MARK = "@@polyfn-describe@@"


def is_current(build_dir: Path) -> bool:
    """Whether a revision's build was made against this polyfn's shims and host (else it is built again)."""
    try:
        return (build_dir / STAMP).read_text() == dotnet.sources_digest() and (build_dir / dotnet.FUNCTION_DLL).exists()
    except OSError:
        return False


async def _compile(tc: dotnet.Toolchain, files: dict[str, bytes], ws: Workspace, builds: BuildSandbox,
                   shim_dir: Path, progress: Callable[[str], None]) -> Path:
    """mcs, `mono --aot` and the host's `describe`, in one run of the build sandbox, into `ws.out`; then, as the
    server, the sealed output gets polyfn's shims, host, the stamp and what `describe` said. The output (to be
    renamed into place)."""
    names = cs_files(files)
    for name in names:
        ws.write(name, implicit_usings(name, files[name]))
    ref = ws.root / "ref"  # the shims and host to compile against and describe with (copies: the shim dir is in
    for name in (dotnet.SHIMS_DLL, dotnet.HOST_EXE):  # the hidden data dir)
        ws.write(name, (shim_dir / name).read_bytes(), under=ref)
    progress(f"build: mcs ({', '.join(names)})")
    dll = ws.out / dotnet.FUNCTION_DLL
    mcs = [tc.mcs, "-target:library", "-debug-", "-optimize+", f"-nowarn:{_NOWARN}", f"-r:{tc.newtonsoft}",
           "-r:Microsoft.CSharp.dll", f"-r:{ref / dotnet.SHIMS_DLL}", f"-out:{dll}",
           *(f"./{name}" for name in names)]  # (a name is never an option: `-resource:…`, `@file`)
    aot = [tc.mono, f"--aot=outfile={dll}.so", str(dll)]
    describe = [tc.mono, str(ref / dotnet.HOST_EXE), "describe", str(dll)]
    # one sandbox run for the three (each run is a spawn: namespaces, cgroup, mounts): the compiler's lines, then
    # the mark, then describe's JSON; the AOT image is optional (without it the assembly is compiled just in time)
    script = (f"{shlex.join(mcs)} || exit $?\n"
              f"{shlex.join(aot)} >/dev/null 2>&1 || echo '@@polyfn-aot-failed@@'\n"
              f"echo '{_DESCRIBE_MARK}'\nexec {shlex.join(describe)}\n")
    lines: list[str] = []
    code, _ = await builds.run(ws, ["/bin/sh", "-c", script], ws.src, {"MONO_PATH": str(ref), **dotnet.MONO_ENV},
                               lines.append)
    cut = lines.index(_DESCRIBE_MARK) if _DESCRIBE_MARK in lines else len(lines)
    compiled, described = lines[:cut], lines[cut + 1:]
    shown = [m for m in compiler_messages(compiled) if not m.startswith(("Compilation ", "@@polyfn-aot-failed"))]
    for m in shown:
        progress(m)
    if cut == len(lines):
        errors = [m for m in shown if ": error CS" in m] or shown
        raise DeployError("build_failed", f"the C# code does not compile{isolate.exit_note(code)}:\n"
                          + "\n".join(errors[:30]))
    if "@@polyfn-aot-failed@@" in compiled:
        progress("build: no ahead-of-time image of the function (it will be compiled just in time)")
    fns = _described(code, described)
    keep = {dotnet.FUNCTION_DLL, f"{dotnet.FUNCTION_DLL}.so"}
    out = await asyncio.to_thread(ws.finish, "build_failed", keep.__contains__)
    for name in (dotnet.SHIMS_DLL, dotnet.HOST_EXE):  # polyfn's own, written as root (never through a link)
        isolate.put(out / name, (shim_dir / name).read_bytes())
    isolate.put(out / DESCRIBED, json.dumps(fns).encode())
    isolate.put(out / STAMP, dotnet.sources_digest().encode())
    progress("build: done")
    return out


def _described(code: int, lines: list[str]) -> list[dict[str, Any]]:
    """`describe`'s JSON from its output lines (a DeployError when it failed or said something else)."""
    found = [ln for ln in lines if ln.startswith("[")]
    if code != 0 or not found:
        raise DeployError("build_failed", f"the compiled C# assembly cannot be loaded{isolate.exit_note(code)}:\n"
                          + "\n".join(lines[-20:]))
    try:
        fns = json.loads(found[-1])
    except ValueError:
        fns = None
    if not isinstance(fns, list) or not all(isinstance(f, dict) for f in fns):
        raise DeployError("build_failed", "the compiled C# assembly cannot be described:\n" + "\n".join(lines[-20:]))
    return fns


async def describe(tc: dotnet.Toolchain, build_dir: Path, builds: BuildSandbox) -> list[dict[str, Any]]:
    """What the host reads from the compiled assembly: every [FunctionName] with its trigger and problems. Said by
    the build (`DESCRIBED`); else (a build of an earlier polyfn) the host's `describe` in the build sandbox (it
    loads the deployer's assembly), with `build_dir` bound read-only."""
    try:
        return _described(0, [(build_dir / DESCRIBED).read_text()])
    except (OSError, DeployError):
        pass
    argv = [tc.mono, str(build_dir / dotnet.HOST_EXE), "describe", str(build_dir / dotnet.FUNCTION_DLL)]
    lines: list[str] = []
    async with builds.workspace(build_dir.parent) as ws:
        code, _ = await builds.run(ws, argv, ws.root, dict(dotnet.MONO_ENV), lines.append, ro=[build_dir])
    return _described(code, lines)


async def check(tc: dotnet.Toolchain, build_dir: Path, handler: str, builds: BuildSandbox) -> dict[str, Any]:
    fns = await describe(tc, build_dir, builds)
    fn = next((f for f in fns if f.get("name") == handler), None)
    if fn is None:
        raise DeployError("handler_not_found", f"the compiled code has no [FunctionName(\"{handler}\")] on a method; "
                          "it has " + (", ".join(str(f.get("name")) for f in fns) or "none"))
    if fn.get("problems"):
        raise DeployError("unsupported_binding", f"{handler} ({fn.get('method')}): " + "; ".join(map(str, fn["problems"])))
    return fn
