"""A package zygote (server side and the trust rules: instances/pkgzygote.py): a fork of the Python zygote that
imports the packages of one dependency layer, then serves like the Python zygote (`zygote.serve`: pre-forked
blanks, each of which prepares and applies its own instance's sandbox before any function code).

It never holds a function's code, data, environment or secrets: the layer's directory is on `sys.path` only
while its packages are imported, with a clean environment; afterwards every instance narrows its import path
as usual (startup.isolate_imports). Its modules' files are under the layer's directory, which each of its
instances has bound at the same path (the server starts here only revisions of that exact layer; a spec for
another layer is refused), so `startup.stage_imports` keeps them (`startup.LAYER`).
"""

from __future__ import annotations

import gc
import importlib
import os
import socket
import sys
import time
from collections.abc import Callable

import msgspec

from polyfn.protocol.spec import SAFE_ENV
from polyfn.protocol.zygote import PackageZygote, ZygoteFailed


def main(req: PackageZygote, ctrl: socket.socket, serve: Callable[[socket.socket, str, float], None]) -> None:
    """In the Python zygote's fork: import, check, then `serve` (zygote.serve) on `ctrl`."""
    from polyfn.runtimes.python import startup
    from polyfn.runtimes.python.fnzygote import _fds, unforkable

    t0 = time.perf_counter()
    enc = msgspec.msgpack.Encoder()
    before = _fds()
    saved = dict(os.environ)
    os.environ.clear()  # (the import sees nothing of the server's environment)
    os.environ.update({k: saved[k] for k in SAFE_ENV if k in saved})
    os.environ.update({"HOME": "/tmp", "TMPDIR": "/tmp"})
    sys.path.insert(0, req.path)
    try:
        for name in req.modules:
            importlib.import_module(name)
        for name in req.also:  # (`from PIL import Image`: PIL.Image a submodule, LinearRegression a class)
            try:
                importlib.import_module(name)
            except Exception:  # not a module, or not importable here: left to the function's own import
                pass
    except BaseException as e:
        ctrl.send(enc.encode(ZygoteFailed(f"importing the layer's packages failed: {type(e).__name__}: {e}")))
        return
    finally:
        sys.path.remove(req.path)
        os.environ.clear()
        os.environ.update(saved)  # (the blanks prepare from the zygote's variables)
    reason = unforkable(before).replace("the module", "the packages")
    if reason:
        ctrl.send(enc.encode(ZygoteFailed(reason)))
        return
    startup.LAYER = req.path
    import_ms = (time.perf_counter() - t0) * 1000
    gc.collect()
    gc.freeze()
    subs = f" and {len(req.also)} of their modules" if req.also else ""
    info = f"fork from package zygote ({', '.join(req.modules)}{subs} imported in {import_ms:.0f} ms)"
    serve(ctrl, info, import_ms)
