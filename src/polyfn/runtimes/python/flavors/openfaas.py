"""OpenFaaS classic python3 template: `def handle(req)`.

`req` is the request body as text; the return value is the response body (`str()` of it when it is not
text or bytes). This is the convention of the seed's reverse sample.
"""

from __future__ import annotations

from typing import Any

from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base


class Adapter(base.Adapter):
    convention = "OpenFaaS `def handle(req)`"

    def check(self) -> None:
        base.check_arity(self.handler, 1, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        return (inv.body.decode("utf-8", "surrogateescape"),)

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if value is None:
            return 200, base.TEXT_CT, b""
        if isinstance(value, bytes | bytearray):
            return 200, base.BINARY_CT, bytes(value)
        if isinstance(value, str):
            return 200, base.TEXT_CT, value.encode("utf-8", "surrogateescape")
        return 200, base.TEXT_CT, str(value).encode()
