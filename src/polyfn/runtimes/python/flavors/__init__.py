"""Flavors: one module per vendor calling convention.

A flavor turns polyfn's canonical invocation (`protocol.Invoke`) into the arguments the vendor's code
expects, and the handler's return value (or exception) back into an HTTP-shaped result. Adding a vendor
is adding one module here with an `Adapter` subclass and registering it in `FLAVORS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from polyfn.runtimes.python.flavors.base import Adapter, FunctionMeta, HandlerError

FLAVORS = {
    "native": "polyfn.runtimes.python.flavors.native",
    "openfaas": "polyfn.runtimes.python.flavors.openfaas",
    "openfaas-http": "polyfn.runtimes.python.flavors.openfaas_http",
    "aws": "polyfn.runtimes.python.flavors.aws",
    "gcp": "polyfn.runtimes.python.flavors.gcp",
    "azure": "polyfn.runtimes.python.flavors.azure",
    "aliyun": "polyfn.runtimes.python.flavors.aliyun",
    "tencent": "polyfn.runtimes.python.flavors.tencent",
    "kubeless": "polyfn.runtimes.python.flavors.kubeless",
    "openwhisk": "polyfn.runtimes.python.flavors.openwhisk",
}

#: Flavors whose modules import sizeable vendor libraries: the zygote imports them after reporting ready.
HEAVY = ("gcp", "azure")
#: Vendor modules that functions import themselves (`import functions_framework`), preloaded the same way.
VENDOR_MODULES = ("functions_framework", "cloudevents.http")


_loaded: dict[str, Any] = {}


def module_for(flavor: str) -> Any:
    """The flavor's module, imported once and kept here: an instance forgets polyfn's modules by name
    before user code runs (a function cannot `import polyfn`), so what it needs later is held, not looked up.
    A flavor module may define `warm()` to import what it uses lazily (aliyun's WSGI half)."""
    module = _loaded.get(flavor)
    if module is None:
        module = importlib.import_module(FLAVORS[flavor])
        if warm := getattr(module, "warm", None):
            warm()
        _loaded[flavor] = module
    return module


def load_adapter(flavor: str, handler: Any, meta: FunctionMeta) -> Adapter:
    if flavor not in FLAVORS:
        raise HandlerError("Runtime.UnknownFlavor", f"unknown flavor {flavor!r}: known are {', '.join(FLAVORS)}")
    module = module_for(flavor)
    adapter: Adapter = module.Adapter(handler, meta)
    return adapter


__all__ = ["FLAVORS", "HEAVY", "VENDOR_MODULES", "Adapter", "FunctionMeta", "HandlerError", "load_adapter", "module_for"]
