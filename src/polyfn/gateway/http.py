"""uvicorn's httptools HTTP/1.1 protocol, with the writes of one event-loop iteration sent as one.

uvicorn writes a response in two `transport.write` calls (status line and headers, then the body), and
uvloop sends each at once: two syscalls and, on loopback, two passes through the TCP stack and two
wake-ups of the client, per response. Measured on the hot path (`/fn/NAME`, wrk -c32): the second write
cost about as much server CPU as the whole gateway's own Python code. `CoalescingHttpToolsProtocol` hands
uvicorn a transport that collects what is written during the current iteration of the loop and sends it
with one write from a `call_soon` callback, so a whole small response leaves in one segment. Everything
else (parsing, keep-alive, pipelining, flow control, TLS, upgrades) is uvicorn's, unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes are held until the end of the current loop iteration, then sent together.

    Anything that ends or inspects the stream (close, write_eof, get_write_buffer_size, set_protocol)
    first sends what is held, so ordering and back-pressure stay exact; `abort` drops it, as the real
    transport would drop its own buffer."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        self.flush()
        return self._transport.get_write_buffer_size()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `CoalescingTransport` (pass the class as `uvicorn.Config(http=...)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
