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
}


def load_adapter(flavor: str, handler: Any, meta: FunctionMeta) -> Adapter:
    if flavor not in FLAVORS:
        raise HandlerError("Runtime.UnknownFlavor", f"unknown flavor {flavor!r}: known are {', '.join(FLAVORS)}")
    module = importlib.import_module(FLAVORS[flavor])
    adapter: Adapter = module.Adapter(handler, meta)
    return adapter


__all__ = ["FLAVORS", "Adapter", "FunctionMeta", "HandlerError", "load_adapter"]
