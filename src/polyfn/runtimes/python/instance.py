"""The instance: runs inside the forked, sandboxed child and serves invocations for one revision.

Phases, as in the Lambda runtime client: **init** (sandbox, environment, import the module, find the
handler, wrap it in the flavor's adapter) reports `Ready` or, once, a typed `InitError` and exits;
**invoke** reads `Invoke` frames and answers `Result` frames on the same socket.

Sync handlers with concurrency 1 run in a plain blocking loop (the fastest path: no event loop at all).
Async handlers, or concurrency > 1, run on an asyncio loop (sync handlers then in a thread pool).
Output printed by the handler is captured per invocation through a context variable, so concurrent
invocations never mix their logs.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import importlib
import io
import math
import os
import select
import socket
import sys
import threading
import time
import traceback
from typing import Any

import msgspec

from polyfn.protocol import (
    HEADER,
    MAX_FRAME,
    Cancel,
    Fault,
    Head,
    InitError,
    Invoke,
    Logs,
    Ready,
    Result,
    encode,
    encode_chunk,
    to_instance_decoder,
)
from polyfn.runtimes.python.flavors import Adapter, FunctionMeta, HandlerError, load_adapter, module_for
from polyfn.runtimes.python.flavors.base import stream_parts, user_stack
from polyfn.sandbox import seccomp as _seccomp
from polyfn.sandbox.plan import SandboxPlan


class InstanceSpec(msgspec.Struct, kw_only=True, array_like=True):
    """Everything the child needs to start; sent by the server through the zygote."""

    instance_id: str
    function: str
    revision: int
    flavor: str
    handler: str
    code_dir: str
    deps_dir: str = ""
    concurrency: int = 1
    memory_mb: int = 256
    timeout: float = 60.0
    env: dict[str, str] = {}
    sandbox: Any = None  # polyfn.sandbox.SandboxPlan, array-encoded
    namespaces: list[str] = []  # namespaces the instance must be in, or it refuses to start (fail closed)
    log_line_max: int = 16384
    log_lines_max: int = 1000
    zygote: bool = False  # become the revision's function zygote (runtimes/python/fnzygote.py), not an instance
    log_bytes_max: int = 1 << 62  # characters of lines kept per invocation (the server bounds bytes again)
    #: the import path after the function's own code and dependencies: the standard library and the
    #: runtime's provided packages (sandbox/rootfs.py); empty keeps the zygote's (tests of the instance alone)
    sys_path: list[str] = []


#: modules polyfn provides to user code (firebase_functions): on the import path after the function's own
PROVIDED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "provided")
SAFE_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "PYTHONHASHSEED",
            "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")

# --- log capture -------------------------------------------------------------------------------------

_current: contextvars.ContextVar[_LogBuffer | None] = contextvars.ContextVar("polyfn_logs", default=None)


_STREAMS = ("stdout", "stderr")


class _LogBuffer:
    """Lines printed during one invocation (or during init).

    Each stream's unfinished line is kept as a list of pieces (print() writes each argument, separator and
    end separately: "a", " ", "b", "\n"), joined once when its newline comes. At most `line_max` chars of
    it are held (no memory blow-up from a huge line written in pieces); what is cut off beyond that is
    counted for the truncation marker. At most `bytes_max` characters of complete lines are held: a flood
    costs neither the instance's memory nor a huge result frame (the server bounds the bytes again)."""

    __slots__ = ("bytes_max", "cut", "dropped", "dropped_bytes", "held", "line_max", "lines", "lines_max", "parts",
                 "size", "stream_after", "streamer")

    def __init__(self, line_max: int, lines_max: int, bytes_max: int = 1 << 62):
        self.lines: list[tuple[float, str, str]] = []
        self.held = 0  # characters in `lines`
        self.bytes_max = bytes_max
        self.dropped_bytes = 0
        self.parts: tuple[list[str], list[str]] = ([], [])  # per stream (index in _STREAMS)
        self.size = [0, 0]  # chars held in parts[i], at most line_max
        self.cut = [0, 0]  # chars of the unfinished line cut off beyond line_max
        self.line_max = line_max
        self.lines_max = lines_max
        self.dropped = 0
        # Streaming (one invocation at a time, `_serve_blocking`): once the invocation has run until
        # `stream_after` (time.monotonic()), complete lines are sent ahead of the result by `streamer()`, at
        # most every STREAM_EVERY s, so a timeout or crash does not take them with it. inf: never.
        self.stream_after = math.inf
        self.streamer: Any = None

    def write(self, i: int, text: str) -> None:
        """Any text to stream `i` (the general case of `_Capture.write`)."""
        if "\n" not in text:
            self._extend(i, text)
            return
        *complete, rest = text.split("\n")
        for line in complete:
            if line:
                self._extend(i, line)
            self.end_line(i)
        if rest:
            self._extend(i, rest)

    def _extend(self, i: int, text: str) -> None:
        held = self.size[i]
        room = self.line_max - held
        if len(text) <= room:
            self.parts[i].append(text)
            self.size[i] = held + len(text)
            return
        if room > 0:
            self.parts[i].append(text[:room])
            self.size[i] = self.line_max
        self.cut[i] += len(text) - max(room, 0)

    def end_line(self, i: int) -> None:
        parts = self.parts[i]
        line = "".join(parts)
        parts.clear()
        self.size[i] = 0
        cut = self.cut[i]
        if cut:
            self.cut[i] = 0
            line += f"… [truncated {cut} chars]"
        if len(self.lines) >= self.lines_max or self.held + len(line) > self.bytes_max:
            self.drop(line)
            return
        self.held += len(line)
        self.lines.append((time.time(), _STREAMS[i], line))
        if self.stream_after != math.inf and time.monotonic() >= self.stream_after:
            self.streamer()

    def drop(self, line: str) -> None:
        self.dropped += 1
        if self.held + len(line) > self.bytes_max:  # (lines over the line count alone keep the old marker)
            self.dropped_bytes += len(line) if line.isascii() else len(line.encode("utf-8", "replace"))

    def pending(self) -> bool:
        return bool(self.lines or self.dropped or self.size[0] or self.size[1] or self.cut[0] or self.cut[1])

    def drain(self) -> list[tuple[float, str, str]]:
        for i in (0, 1):
            if self.size[i] or self.cut[i]:
                self.end_line(i)
        if self.dropped:
            what = f"[polyfn: {self.dropped} more lines dropped]"
            if self.dropped_bytes:
                what = (f"[polyfn: {self.dropped} more lines dropped: {self.dropped_bytes} bytes of logs dropped: the "
                        f"activation logged more than {self.bytes_max} bytes (POLYFN_LOG_BYTES_PER_ACTIVATION)]")
            self.lines.append((time.time(), "stderr", what))
            self.dropped = self.dropped_bytes = 0
        out, self.lines = self.lines, []
        self.held = 0
        return out


class _Capture(io.TextIOBase):
    """sys.stdout / sys.stderr replacement routing writes to the current invocation's buffer.

    `write` is on the path of every print() (four calls for `print(a, b)`), so the common cases are
    inline: a piece without a newline joins the unfinished line, a lone "\n" ends it."""

    def __init__(self, stream: str, fallback: _LogBuffer):
        self.stream = stream
        self.index = _STREAMS.index(stream)
        self.fallback = fallback

    def write(self, s: str) -> int:
        buf = _current.get() or self.fallback
        i = self.index
        if "\n" not in s:
            size = buf.size
            n = size[i] + len(s)
            if n <= buf.line_max:
                buf.parts[i].append(s)
                size[i] = n
                return len(s)
        elif s == "\n":
            buf.end_line(i)
            return 1
        buf.write(i, s)
        return len(s)

    def write_line(self, s: str) -> None:
        """`s` and a newline: one call for what print() writes in 2n pieces (see `_print`)."""
        buf = _current.get() or self.fallback
        i = self.index
        if buf.size[i] or len(s) > buf.line_max or "\n" in s:  # joins a started line, is cut, or is several
            buf.write(i, s)
            buf.end_line(i)
        elif len(buf.lines) < buf.lines_max and buf.held + len(s) <= buf.bytes_max:
            buf.held += len(s)
            buf.lines.append((time.time(), _STREAMS[i], s))
            if buf.stream_after != math.inf and time.monotonic() >= buf.stream_after:
                buf.streamer()
        else:
            buf.drop(s)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


_builtin_print = builtins.print


def _print(*args: object, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    """print() as the function sees it. To a capture with the default separator and end it hands over the
    whole line in one `write_line` (builtin print calls `write` once per argument, separator and end: four
    Python-level calls for `print('handled', path)`, half the cost of a log line in the instance).
    Anything else goes to the builtin, unchanged."""
    out = sys.stdout if file is None else file
    if type(out) is _Capture and sep == " " and end == "\n":
        out.write_line(" ".join([a if type(a) is str else str(a) for a in args]))
    else:
        _builtin_print(*args, sep=sep, end=end, file=file, flush=flush)


def capture_output(init_buf: _LogBuffer) -> None:
    """From here on, what this process prints goes to the current invocation's buffer (`init_buf` outside
    any invocation)."""
    sys.stdout = _Capture("stdout", init_buf)
    sys.stderr = _Capture("stderr", init_buf)
    builtins.print = _print


# --- init --------------------------------------------------------------------------------------------


def _load_handler(spec: InstanceSpec) -> Any:
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
    `_isolate_imports`: it imports nothing (polyfn's files may be out of reach by then)."""
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


def _isolate_imports(spec: InstanceSpec, own: list[str]) -> None:
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
    sys.path_importer_cache.clear()
    for name, mod in list(sys.modules.items()):
        if name == "polyfn" or name.startswith("polyfn."):
            del sys.modules[name]
            continue
        file = getattr(mod, "__file__", None)
        if file and not os.path.exists(file):
            del sys.modules[name]


def _prepare_process(spec: InstanceSpec, prepared: Any = None) -> list[str]:
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
        _isolate_imports(spec, paths)
    else:  # no provided import path given (tests of the instance alone): add to the zygote's own
        sys.path[:0] = paths
        sys.path.append(PROVIDED_DIR)  # vendor modules polyfn provides (firebase_functions): after the function's own
    # A clean environment: nothing of the server's (keys, credentials, database URLs) leaks into user code.
    base = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    os.environ.clear()
    os.environ.update(base)
    os.environ.update(
        {
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
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


# --- serving ------------------------------------------------------------------------------------------


# os.environ's own mapping (bytes keys and values on POSIX). Writing `os.environ[k] = v` also calls C
# setenv(), and glibc keeps every value ever set (so that pointers handed out by getenv() stay valid): with
# a new trace id per invocation that leaked ~200 bytes per invocation (measured: 198 MB of RSS per million),
# enough to push a busy instance over its memory limit within minutes. The per-invocation values are
# therefore set in the mapping only: Python code (os.environ, os.getenv) sees them; C getenv() and child
# processes started without an explicit env do not (pass `env=os.environ` to give them the trace).
_ENV_DATA: Any = getattr(os.environ, "_data", None) if os.name == "posix" else None


def _set_trace_env(inv: Invoke) -> None:
    """Lambda-style: the current trace in the environment (exact for concurrency 1; with concurrency > 1
    use the context object's `trace_id` / `traceparent`, which are per invocation)."""
    traceparent = f"00-{inv.trace_id}-{inv.activation_id[:16]}-01"
    data = _ENV_DATA
    if data is not None:
        data[b"POLYFN_TRACE_ID"] = inv.trace_id.encode()
        data[b"TRACEPARENT"] = traceparent.encode()
    else:
        os.environ["POLYFN_TRACE_ID"] = inv.trace_id
        os.environ["TRACEPARENT"] = traceparent


STREAM_AFTER = 1.0  # s an invocation runs before its lines are streamed (or half its timeout, if less)
STREAM_EVERY = 0.1  # s between two streamed batches


class _Streamer:
    """Sends the complete lines of the running invocation ahead of its result (protocol.Logs). Called from a
    print() in the handler (the only thread that sends in `_serve_blocking`, so frames never interleave); a
    line printed by another thread of the function goes to this buffer too and is sent with the next batch."""

    __slots__ = ("buf", "id", "send", "thread")

    def __init__(self, buf: _LogBuffer, send: Any):
        self.buf, self.send, self.id = buf, send, 0
        self.thread = threading.get_ident()  # the serving thread: the only one that may send

    def __call__(self) -> None:
        if threading.get_ident() != self.thread:
            return  # another thread of the function: its lines go with the next batch the handler's thread sends
        buf = self.buf
        buf.stream_after = math.inf  # not again from inside the drain below
        held = buf.lines
        lines = held[:]  # copy, then cut (each one step under the GIL): a line another thread appends in between
        del held[:len(lines)]  # stays for the next batch instead of going with a list already sent
        buf.held = 0
        try:
            self.send(encode(Logs(self.id, lines)))  # type: ignore[arg-type]  # [ts, stream, line] tuples
        finally:
            buf.stream_after = time.monotonic() + STREAM_EVERY


class _LoopStreams:
    """`_Streamer`s for the loop (`_serve_async`: async handlers, or concurrency > 1): once an invocation has run
    STREAM_AFTER (or half its timeout), its complete lines go out ahead of its result — from the print itself
    on the loop's thread (an async handler, even one that blocks the loop), and from one timer of the
    instance, every STREAM_EVERY s while invocations are in flight, for what a sync handler prints in the
    pool's threads. (One timer, not one per invocation: a uvloop timer costs ~10 µs to arm and cancel.)"""

    __slots__ = ("handle", "live", "send")

    def __init__(self, send: Any):
        self.send = send
        self.live: dict[int, _Streamer] = {}  # invocations in flight, by id
        self.handle: asyncio.TimerHandle | None = None

    def start(self, buf: _LogBuffer, inv: Invoke) -> None:
        streamer = buf.streamer = _Streamer(buf, self.send)
        streamer.id = inv.id
        buf.stream_after = time.monotonic() + min(STREAM_AFTER, max(inv.deadline - time.time(), 0.0) / 2)
        self.live[inv.id] = streamer
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(STREAM_EVERY, self.tick)

    def stop(self, inv_id: int) -> None:
        streamer = self.live.pop(inv_id, None)
        if streamer is not None:
            streamer.buf.stream_after = math.inf

    def tick(self) -> None:
        now = time.monotonic()
        for streamer in list(self.live.values()):
            buf = streamer.buf
            if buf.lines and now >= buf.stream_after:
                streamer()
        self.handle = asyncio.get_running_loop().call_later(STREAM_EVERY, self.tick) if self.live else None


def _run_one(adapter: Adapter, inv: Invoke, buf: _LogBuffer, wire: _Wire | None = None) -> Result:
    """Run one invocation; a streamed response goes out on `wire` as it is made (without one, the tests' harness:
    the stream is read whole into the Result)."""
    if inv.trace_id:
        _set_trace_env(inv)
    t0 = time.perf_counter()
    token = _current.set(buf)
    try:
        value = adapter.handler(*adapter.args(inv))
        parts = stream_parts(value)
        if parts is None:
            status, headers, body = adapter.respond(inv, value)
            error = None
        elif wire is None:
            status, headers, body, error = parts[0], parts[1], b"".join(_piece(p) for p in _sync_iter(parts[2])), None
        else:
            status, headers, body = parts[0], [], b""
            error = _stream_blocking(adapter, inv, parts, wire)
    except Exception as exc:
        status, headers, body, error = adapter.fail(inv, exc)
    finally:
        _current.reset(token)
    return Result(inv.id, status, headers, body, error, buf.drain(), (time.perf_counter() - t0) * 1000)


# --- streamed responses (docs/streaming.md) -----------------------------------------------------------------

CHUNK_MAX = 16 << 20  # a larger piece goes in several Chunk frames (a frame is at most protocol.MAX_FRAME)


def _piece(piece: Any) -> Any:
    """A yielded piece as bytes (str: UTF-8); anything else is the function's error."""
    t = type(piece)
    if t is bytes or t is bytearray or t is memoryview:
        return piece
    if t is str:
        return piece.encode()
    raise TypeError(f"a streamed response yields bytes or str, not {t.__name__}")


class _Wire:
    """The blocking loop's connection as a stream writer: `chunk` sends a piece without copying it into a frame,
    `cancelled` looks (without waiting) for the server's `Cancel` of the streaming invocation. Frames read
    while looking stay in `data`, the loop's own buffer, for the loop to read next."""

    __slots__ = ("data", "poll", "sock")

    def __init__(self, sock: socket.socket, data: bytearray, poll: Any):
        self.sock, self.data, self.poll = sock, data, poll

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def chunk(self, inv_id: int, piece: Any) -> None:
        n = len(piece)
        if n > CHUNK_MAX:
            view = memoryview(piece).cast("B")
            for i in range(0, n, CHUNK_MAX):
                self.chunk(inv_id, view[i:i + CHUNK_MAX])
            return
        parts = encode_chunk(inv_id, piece)
        sent = self.sock.sendmsg(parts)
        if sent < len(parts[0]) + n:  # (a signal cut the send short: the rest, copied)
            self.sock.sendall((parts[0] + bytes(piece))[sent:])

    def cancelled(self, inv_id: int) -> bool:
        """Has the server cancelled `inv_id` (or closed the connection)? One poll(0) when nothing came."""
        if not self.poll(0):
            return False
        more = self.sock.recv(65536)
        if not more:
            return True
        data = self.data
        data += more
        pos = 0
        while len(data) - pos >= 4:
            (size,) = HEADER.unpack_from(data, pos)
            end = pos + 4 + size
            if end > len(data):
                break
            if size < 64:  # (an Invoke is larger: only a Cancel is decoded here)
                msg = to_instance_decoder.decode(data[pos + 4:end])
                if type(msg) is Cancel:
                    del data[pos:end]
                    if msg.id == inv_id:
                        return True
                    continue
            pos = end
        return False


def _stream_blocking(adapter: Adapter, inv: Invoke, parts: tuple[int, list[tuple[str, str]], Any],
                     wire: _Wire) -> dict[str, Any] | None:
    """Send the head, then each piece as the function yields it; None when it ended cleanly or was cancelled,
    else the function's error (the Result says it; the edge shows the error marker). A cancel closes the
    generator: `GeneratorExit` at its `yield`."""
    status, headers, chunks = parts
    wire.send(encode(Head(inv.id, status, headers)))
    chunks = _sync_iter(chunks)  # (an async generator from a sync handler: stepped on a loop of its own)
    try:
        for piece in chunks:
            piece = _piece(piece)
            if piece:
                wire.chunk(inv.id, piece)
            if wire.cancelled(inv.id):
                break
    except Exception as exc:
        return adapter.fail(inv, exc)[3]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # (a generator that yields again or raises while closing: it is over anyway)
                pass
    return None


def _sync_iter(chunks: Any) -> Any:
    return _sync_steps(chunks) if hasattr(chunks, "__anext__") else chunks


def _sync_steps(agen: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
            except GeneratorExit:
                loop.run_until_complete(agen.aclose())
                raise
    finally:
        loop.close()


_DONE: Any = object()


async def _stream_async(adapter: Adapter, inv: Invoke, parts: tuple[int, list[tuple[str, str]], Any],
                        writer: asyncio.StreamWriter, pool: Any) -> dict[str, Any] | None:
    """`_stream_blocking` on the loop: an async generator is iterated here (a cancel cancels this task: the
    generator sees `CancelledError` at its await, then is closed); a sync generator's steps run in the
    thread pool. Back-pressure: each chunk waits for the connection's buffer to drain."""
    status, headers, chunks = parts
    writer.write(encode(Head(inv.id, status, headers)))
    is_async = hasattr(chunks, "__anext__")
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    step: asyncio.Future[Any] | None = None  # a sync generator's step running in the pool
    try:
        while True:
            if is_async:
                try:
                    piece = await chunks.__anext__()
                except StopAsyncIteration:
                    break
            else:
                step = loop.run_in_executor(pool, ctx.run, next, chunks, _DONE)
                piece = await asyncio.shield(step)  # (a cancel must not cancel the step: the thread runs on)
                step = None
                if piece is _DONE:
                    break
            piece = _piece(piece)
            if piece:
                view = memoryview(piece).cast("B")
                for i in range(0, len(view), CHUNK_MAX):
                    writer.writelines(encode_chunk(inv.id, view[i:i + CHUNK_MAX]))
                await writer.drain()
    except asyncio.CancelledError:  # the server's Cancel: the stream is over, the Result still goes
        if step is not None:  # (a generator can be closed only between its steps: let the running one end)
            await asyncio.wait([step], timeout=1.0)
    except Exception as exc:
        return adapter.fail(inv, exc)[3]
    finally:
        try:
            if is_async:
                await chunks.aclose()
            elif hasattr(chunks, "close"):
                await loop.run_in_executor(pool, ctx.run, chunks.close)
        except BaseException:  # (a generator misbehaving while closing: it is over anyway)
            pass
    return None


async def _run_one_async(adapter: Adapter, inv: Invoke, spec: InstanceSpec, pool: Any,
                         writer: asyncio.StreamWriter | None = None, streams: _LoopStreams | None = None) -> Result:
    buf = _LogBuffer(spec.log_line_max, spec.log_lines_max, spec.log_bytes_max)
    if inv.trace_id:
        _set_trace_env(inv)
    t0 = time.perf_counter()
    token = _current.set(buf)
    if streams is not None:
        streams.start(buf, inv)
    try:
        args = adapter.args(inv)
        if adapter.is_async:
            value = await adapter.handler(*args)
        else:
            ctx = contextvars.copy_context()
            value = await asyncio.get_running_loop().run_in_executor(pool, ctx.run, adapter.handler, *args)
        parts = stream_parts(value)
        if parts is None:
            status, headers, body = adapter.respond(inv, value)
            error = None
        elif writer is None:
            chunks = parts[2]
            pieces = [p async for p in chunks] if hasattr(chunks, "__anext__") else list(chunks)
            status, headers, body, error = parts[0], parts[1], b"".join(_piece(p) for p in pieces), None
        else:
            status, headers, body = parts[0], [], b""
            error = await _stream_async(adapter, inv, parts, writer, pool)
    except Exception as exc:
        status, headers, body, error = adapter.fail(inv, exc)
    finally:
        _current.reset(token)
        if streams is not None:
            streams.stop(inv.id)
    return Result(inv.id, status, headers, body, error, buf.drain(), (time.perf_counter() - t0) * 1000)


def _serve_blocking(sock: socket.socket, adapter: Adapter, init_buf: _LogBuffer) -> None:
    """One invocation at a time. The wait for the next frame is a poll() for POLLIN, not a blocking recv():
    a task asleep in recv() on a Unix socket is also woken each time the server reads this end's result
    (the kernel's write-space wake-up shares that wait queue), which cost both processes a wake-up per
    invocation; poll()'s wait filters by event, so only a new frame wakes us."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    wait = poll.poll
    recv = sock.recv
    unpack_from = HEADER.unpack_from
    decode = to_instance_decoder.decode
    send = sock.sendall
    data = bytearray()
    streamed = _Streamer(init_buf, send)
    init_buf.streamer = streamed
    wire = _Wire(sock, data, wait)
    while True:
        while len(data) < 4:
            wait()
            chunk = recv(65536)
            if not chunk:
                return  # the server closed the connection: shut down
            data += chunk
        (size,) = unpack_from(data)
        if size > MAX_FRAME:
            return
        end = 4 + size
        while len(data) < end:
            wait()
            chunk = recv(max(65536, end - len(data)))
            if not chunk:
                return
            data += chunk
        inv = decode(data[4:end])
        del data[:end]
        if type(inv) is Cancel:  # (an invocation that ended already)
            continue
        # The init buffer serves every invocation: what init printed goes with the first result, and what
        # threads of the function print outside an invocation's context (they do not inherit it; their
        # writes go to the captures' fallback, this buffer) with the current or the next one.
        streamed.id = inv.id
        init_buf.stream_after = time.monotonic() + min(STREAM_AFTER, max(inv.deadline - time.time(), 0.0) / 2)
        try:
            result = _run_one(adapter, inv, init_buf, wire)
        finally:
            init_buf.stream_after = math.inf
        send(encode(result))


async def _serve_async(sock: socket.socket, adapter: Adapter, spec: InstanceSpec, init_buf: _LogBuffer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pool = None if adapter.is_async else ThreadPoolExecutor(spec.concurrency, thread_name_prefix="fn")
    reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_FRAME)
    tasks: set[asyncio.Task[None]] = set()
    streams = _LoopStreams(writer.write)
    running: dict[int, asyncio.Task[None]] = {}

    async def one(inv: Invoke) -> None:
        try:
            result = await _run_one_async(adapter, inv, spec, pool, writer, streams)
        finally:
            running.pop(inv.id, None)
        if init_buf.pending():  # printed during init, or outside any invocation's context (a function's thread)
            result.logs[:0] = init_buf.drain()
        writer.write(encode(result))

    while True:
        try:
            head = await reader.readexactly(4)
            (size,) = HEADER.unpack(head)
            if size > MAX_FRAME:
                return
            inv = to_instance_decoder.decode(await reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if type(inv) is Cancel:  # a stream nobody reads any more: its task is cancelled (`_stream_async` turns
            task = running.get(inv.id)  # the CancelledError into the stream's end: the Result still goes)
            if task is not None:
                task.cancel()
            continue
        t = asyncio.ensure_future(one(inv))
        running[inv.id] = t
        tasks.add(t)
        t.add_done_callback(tasks.discard)


def main(spec: InstanceSpec, sock: socket.socket, info: str, prepared: Any = None) -> None:
    """Entry point in the forked child. Never returns normally: the caller `_exit`s."""
    t0 = time.perf_counter()
    init_buf = _LogBuffer(spec.log_line_max, spec.log_lines_max, spec.log_bytes_max)
    capture_output(init_buf)
    try:
        applied = _prepare_process(spec, prepared)
        report_refusals(spec, sock)
        handler = _load_handler(spec)
        meta = FunctionMeta(spec.function, spec.revision, spec.handler, spec.memory_mb, spec.timeout, spec.env)
        adapter = load_adapter(spec.flavor, handler, meta)
    except HandlerError as e:
        sock.sendall(encode(InitError(e.payload(), init_buf.drain())))
        return
    except BaseException as e:  # anything else during init is still reported once, typed
        payload = {
            "errorType": "Runtime.InitError",
            "errorMessage": f"{type(e).__name__}: {e}",
            "stackTrace": traceback.format_exception(e)[-10:],
        }
        sock.sendall(encode(InitError(payload, init_buf.drain())))
        return
    if applied:
        info = info + "; sandbox: " + ", ".join(applied)
    # In a pid namespace our pid means nothing to the server (we are pid 1): 0 keeps the one it knows.
    pid = 0 if prepared is not None and prepared.pid_ns else os.getpid()
    serve(sock, adapter, spec, init_buf, Ready(pid, (time.perf_counter() - t0) * 1000, info))


def serve(sock: socket.socket, adapter: Adapter, spec: InstanceSpec, init_buf: _LogBuffer, ready: Ready,
          after_ready: Any = None) -> None:
    """Report `ready` (then run `after_ready()`) and serve invocations until the server closes the connection."""
    sock.sendall(encode(ready))
    if after_ready is not None:
        after_ready()
    if adapter.is_async or spec.concurrency > 1:
        try:
            import uvloop

            uvloop.run(_serve_async(sock, adapter, spec, init_buf))
        except ImportError:
            asyncio.run(_serve_async(sock, adapter, spec, init_buf))
    else:
        _serve_blocking(sock, adapter, init_buf)
