"""The instance's init phase, before any invocation (as in the Lambda runtime client): the sandbox applied,
a clean environment, the import path narrowed to the function's code, the stdlib and the provided packages,
then the handler imported and found; errors typed (`HandlerError`) for the one `InitError` report.
`InstanceSpec` (protocol/spec.py) is everything the child needs to start (sent by the server through the zygote)."""

from __future__ import annotations

import importlib
import os
import socket
import sys
from typing import Any

import msgspec

from polyfn.protocol import Fault, encode
from polyfn.protocol.spec import SAFE_ENV, InstanceSpec
from polyfn.runtimes.python.flavors import HandlerError, module_for
from polyfn.runtimes.python.flavors.base import user_stack
from polyfn.sandbox import seccomp as _seccomp
from polyfn.sandbox.plan import SandboxPlan

#: modules polyfn provides to user code (firebase_functions): on the import path after the function's own
PROVIDED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "provided")


def load_handler(spec: InstanceSpec) -> Any:
    module_name, _, func_name = spec.handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as e:
        raise HandlerError(
            "Runtime.UserCodeSyntaxError",
            f"syntax error in {os.path.relpath(e.filename or '?', spec.code_dir)}:{e.lineno}: {e.msg}",
        ) from None
    except ModuleNotFoundError as e:
        if e.name == module_name or module_name.startswith((e.name or "") + "."):
            raise HandlerError(
                "Runtime.ImportModuleError", f"unable to import module {module_name!r}: no such module"
            ) from None
        raise HandlerError("Runtime.ImportModuleError", f"unable to import module {module_name!r}: {e}", _stack(e)) from None
    except Exception as e:
        raise HandlerError(
            "Runtime.ImportModuleError", f"unable to import module {module_name!r}: {type(e).__name__}: {e}", _stack(e)
        ) from None
    try:
        return getattr(module, func_name)
    except AttributeError:
        raise HandlerError(
            "Runtime.HandlerNotFound",
            f"handler {func_name!r} missing on module {module_name!r}{_expected(spec.flavor)}",
        ) from None


def _expected(flavor: str) -> str:
    """`: the <vendor> convention expects …` for messages about a missing or unfit handler."""
    try:
        convention = module_for(flavor).Adapter.convention
    except (KeyError, ImportError, AttributeError):
        return ""
    return f" (flavor {flavor}: {convention})"


def _stack(e: BaseException) -> list[str]:
    return user_stack(e)


_SECCOMP_FIELD = SandboxPlan.__struct_fields__.index("seccomp")  # in the array-encoded plan


def report_refusals(spec: InstanceSpec, sock: socket.socket | None) -> None:
    """Under seccomp, a refused call ends the process by SIGSYS: first tell the server, on `sock`, which
    call it was (None: a function zygote, whose children say where with `redirect_refusals`). Runs after
    `isolate_imports`: it imports nothing (polyfn's files may be out of reach by then)."""
    plan = spec.sandbox
    if plan is None or not (plan.seccomp if isinstance(plan, msgspec.Struct) else plan[_SECCOMP_FIELD]):
        return
    _seccomp.name_refusals(_fault_writer(sock))


def redirect_refusals(sock: socket.socket) -> None:
    """In a function zygote's child: refused calls are reported on this instance's connection."""
    _seccomp.redirect(_fault_writer(sock))


def _fault_writer(sock: socket.socket | None) -> Any:
    fd = -1 if sock is None else sock.fileno()

    def report(text: str) -> None:
        if fd >= 0:
            try:
                os.write(fd, encode(Fault(text)))
            except OSError:
                pass

    return report


#: sys.modules as the zygote left it before forking (`snapshot_modules`): (how many, the newest name, one
#: line per module — "NAME" to forget, "NAME\tFILE" to forget unless FILE exists)
_SNAPSHOT: tuple[int, str, str] | None = None
_ZYGOTE_FINDERS: list[dict[str, Any]] = []  # sys.path_importer_cache as the zygote had it (see isolate_imports)
#: in a package zygote and its forks (runtimes/python/pkgzygote.py): the dependency layer its packages were
#: imported from, which every instance it starts has bound at the same path
LAYER = ""


def snapshot_modules() -> None:
    """In the zygote, once its imports are done and right before it forks: what `isolate_imports` will look
    at, as one string. An instance that walked sys.modules itself would touch every module object, name
    and file name — some 500 objects spread over the zygote's heap — and copy ~3.5 MB of pages it shares
    with the zygote; reading this string touches a few contiguous pages."""
    global _SNAPSHOT
    lines: list[str] = []
    for name, mod in sys.modules.items():
        if name == "polyfn" or name.startswith("polyfn."):
            lines.append(name)
            continue
        file = getattr(mod, "__file__", None)
        if not file:
            continue
        if not isinstance(file, str) or "\n" in file or "\t" in file or "\n" in name or "\t" in name:
            _SNAPSHOT = None  # (never seen) the walk in `isolate_imports` handles it
            return
        lines.append(f"{name}\t{file}")
    _SNAPSHOT = (len(sys.modules), next(reversed(sys.modules)), "\n".join(lines))


def _forget(name: str, mod: Any) -> bool:
    if name == "polyfn" or name.startswith("polyfn."):
        return True
    file = getattr(mod, "__file__", None)
    return bool(file) and not os.path.exists(file)


def _forget_from_snapshot(missing: list[str] | None = None) -> bool:
    """`isolate_imports`' purge from the zygote's snapshot plus the modules imported since (False: the
    snapshot does not describe sys.modules any more; nothing was changed). `missing`: the snapshot's modules
    to forget, found by the blank (`stage_imports`)."""
    if _SNAPSHOT is None:
        return False
    count, newest, lines = _SNAPSHOT
    added = len(sys.modules) - count
    if added < 0:
        return False
    since: list[str] = []
    for name in reversed(sys.modules):  # dicts keep insertion order: what came after the snapshot is last
        if len(since) == added:
            if name is not newest:
                return False
            break
        since.append(name)
    if missing is not None:
        for name in missing:
            sys.modules.pop(name, None)
    else:
        for line in lines.split("\n"):
            name, _, file = line.partition("\t")
            if not file or not os.path.exists(file):
                sys.modules.pop(name, None)
    for name in since:
        if _forget(name, sys.modules.get(name)):
            sys.modules.pop(name, None)
    return True


def stage_imports(prepared: Any, stage: str = "") -> None:
    """In a pre-forked blank that staged the shared root filesystem (`sandbox.prepare`, at `stage`, by default
    rootfs.STAGE): which of the zygote's modules come from files that root lacks, found now rather than by a
    stat of every module file on the cold path (`isolate_imports`). The function's own binds (code,
    dependencies) hold no zygote's module, but a package zygote's (`LAYER`). A path through a symbolic link that leaves the stage counts
    as lacking (forgetting a module is the safe side: a module whose file is there is imported again)."""
    if _SNAPSHOT is None or not prepared.root_staged:
        return
    if not stage:
        from polyfn.sandbox.rootfs import STAGE as stage
    exists, islink, realpath, dirname = os.path.exists, os.path.islink, os.path.realpath, os.path.dirname
    inside: dict[str, bool] = {}
    missing: list[str] = []
    layer = LAYER + "/" if LAYER else "\0"
    for line in _SNAPSHOT[2].split("\n"):
        name, _, file = line.partition("\t")
        if file.startswith(layer):  # a package zygote's: in the instance's dependency bind
            continue
        if file:
            d = dirname(file)
            ok = inside.get(d)
            if ok is None:
                ok = inside[d] = realpath(stage + d).startswith(stage + "/")
            if ok and not islink(stage + file) and exists(stage + file):
                continue
        missing.append(name)
    prepared.missing_modules = missing


def isolate_imports(spec: InstanceSpec, own: list[str], prepared: Any = None) -> None:
    """What user code can import: its own code and dependencies first, then the standard library and the
    runtime's provided packages (boto3 …; a function's own copy wins, being earlier), nothing of polyfn's
    server environment (fastapi, sqlalchemy, polyfn itself, the server's working directory).

    The runtime's own modules stay loaded (the running code holds them) but are forgotten by name, so
    `import polyfn` looks for files — and in the instance's root filesystem there are none. Modules the
    zygote loaded from files the root filesystem does not contain are forgotten the same way."""
    try:
        module_for(spec.flavor)  # held by the flavors registry: load_adapter needs it after the purge
    except (KeyError, ImportError):
        pass  # reported by load_adapter
    sys.path[:] = [*own, *spec.sys_path, PROVIDED_DIR]
    # Fresh finders for the instance's root; the zygote's are set aside rather than cleared: freeing them
    # (their listings of every directory seen) would write to ~1.5 MB of pages shared with the zygote.
    _ZYGOTE_FINDERS.append(sys.path_importer_cache)
    sys.path_importer_cache = {}
    missing = getattr(prepared, "missing_modules", None) if getattr(prepared, "root_staged", "") else None
    if _forget_from_snapshot(missing):
        return
    for name, mod in list(sys.modules.items()):
        if _forget(name, mod):
            del sys.modules[name]


_env_clean = False  # `clean_environ` ran in this process


def clean_environ() -> None:
    """A clean environment: nothing of the server's (keys, credentials, database URLs) leaks into user code.
    It is the same for every function, so a pre-forked blank makes it off the cold path."""
    global _env_clean
    base = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    os.environ.clear()
    os.environ.update(base)
    os.environ.update({"HOME": "/tmp", "TMPDIR": "/tmp"})
    _env_clean = True


def prepare_process(spec: InstanceSpec, prepared: Any = None) -> list[str]:
    """Sandbox, environment and import path. Runs before any user code."""
    applied: list[str] = []
    if spec.sandbox is not None:
        from polyfn.sandbox import SandboxPlan, apply

        plan = spec.sandbox if isinstance(spec.sandbox, SandboxPlan) else msgspec.convert(spec.sandbox, SandboxPlan)
        applied = apply(plan, prepared, tuple(spec.namespaces))
    # Raw writes to fds 0-2 (os.write, C extensions) would land in the zygote's log on the node's disk:
    # a function could flood it. print() output is captured per invocation (sys.stdout/err) instead.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir(spec.code_dir)
    paths = [spec.code_dir] + ([spec.deps_dir] if spec.deps_dir else [])
    if spec.sys_path:
        isolate_imports(spec, paths, prepared)
    else:  # no provided import path given (tests of the instance alone): add to the zygote's own
        sys.path[:0] = paths
        sys.path.append(PROVIDED_DIR)  # vendor modules polyfn provides (firebase_functions): after the function's own
    if not _env_clean:
        clean_environ()
    os.environ.update(
        {
            "PYTHONPATH": os.pathsep.join(paths),
            "POLYFN_FUNCTION_NAME": spec.function,
            "POLYFN_FUNCTION_REVISION": str(spec.revision),
            "POLYFN_INSTANCE_ID": spec.instance_id,
            "POLYFN_MEMORY_MB": str(spec.memory_mb),
            "POLYFN_TIMEOUT": str(spec.timeout),
            # The instance's pid as the node sees it (`ps`, the server's logs); in a pid namespace getpid() is 2.
            "POLYFN_HOST_PID": str(getattr(prepared, "host_pid", 0) or os.getpid()),
        }
    )
    os.environ.update(spec.env)
    return applied

