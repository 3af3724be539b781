"""The `http` runtime's instance: starts any program that serves HTTP on `$PORT` and relays invocations to it.

Design: this small proxy *is* the instance as the server sees it (same socket, same frames as a Python or
Node instance), so pools, deadlines, crash reporting and activations need nothing special. The program
is the proxy's child:

- **Network**: as root the proxy first moves into a private network namespace with only loopback, so
  every instance can listen on the same port and programs that ignore `$PORT` and listen on `:8080` (as
  the seed's Knative `reverse.go` does) still work, many instances at once. The price: no egress from the
  instance. Elsewhere (or with `POLYFN_HTTP_PRIVATE_NETWORK=false`) the program shares the host network
  and gets a free port in `$PORT`.
- **Readiness**: a TCP connect to the port succeeds, within the init timeout. A program that exits or never
  opens its port fails the start with the tail of its stderr in the error.
- **Requests**: one HTTP/1.1 keep-alive connection per concurrent slot (`http.client`, worker threads).
- **Streams**: a chunked response or server-sent events (`text/event-stream`) is relayed as it comes
  (protocol `Head`, then a `Chunk` per piece read, docs/streaming.md); the server's `Cancel` (its client went)
  closes the connection to the program, which sees its client go.
- **Logs**: the program's stdout/stderr lines go to the invocation in flight (to the next result when
  several are in flight or none is).
- **Exit**: when the program dies the proxy exits with its status, so the caller sees "exited with code N".
- **C#** (`runtime: dotnet`): the program is the C# host (runtimes/dotnet), spoken to in frames on two pipes
  (`runtimes/dotnet/link.py`, dotnethost.py) instead of HTTP; pre-started as a blank (`blank_main`).

The program itself (command line, network, port, log lines) is program.py's; WebSockets passed through are
wsrelay.py's.

Environment: `PORT`, `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION` (Knative's runtime contract).
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from polyfn.protocol import (
    HEADER,
    MAX_FRAME,
    Cancel,
    Chunk,
    Head,
    InitError,
    Invoke,
    Ready,
    Result,
    encode,
    encode_chunk,
    to_instance_decoder,
)
from polyfn.runtimes import dotnet
from polyfn.runtimes.dotnet.link import HostLink
from polyfn.runtimes.http import dotnethost, h2c, wsrelay
from polyfn.runtimes.http.dotnethost import host_ready, phases, read_gate, recv_exact
from polyfn.runtimes.http.program import (
    DEFAULT_PORT,
    HOP,
    Logs,
    child_preexec,
    default_or_free_port,
    free_port,
    private_network,
    resolve_command,
)

HOP_REQUEST = HOP | {"content-length", "http2-settings"}
OWN = ("x-polyfn-logs", "x-polyfn-function-error")  # response headers meant for polyfn (own_headers)


def request_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The caller's headers for the program: without hop-by-hop ones, nor those its `Connection` names (RFC 9110
    7.6.1). An `Upgrade: h2c` offer (with its `HTTP2-Settings`) is declined so: the node and the program speak
    HTTP/1.1 (docs/streaming.md, "h2c")."""
    named = {t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")}
    return [(k, v) for k, v in headers if k.lower() not in HOP_REQUEST and k.lower() not in named]


def own_headers(headers: list[tuple[str, str]], body: bytes,
                line_max: int) -> tuple[list[tuple[str, str]], dict[str, Any] | None, list[tuple[float, str, str]]]:
    """A program's answers to polyfn, taken out of its response headers: `X-Polyfn-Logs` (a JSON array of
    `[stream, line]`: the invocation's log lines, exact whatever its pipes do) and `X-Polyfn-Function-Error` (the JSON body is the function's error, typed)."""
    rest, error, logs = [], None, []
    now = time.time()
    for k, v in headers:
        low = k.lower()
        if low == "x-polyfn-logs":
            try:
                items = json.loads(v)
            except ValueError:
                items = [["stderr", "[polyfn] undecodable X-Polyfn-Logs header"]]
            for item in items if isinstance(items, list) else []:
                if isinstance(item, list) and len(item) == 2 and item[0] in ("stdout", "stderr"):
                    logs.append((now, item[0], str(item[1])[:line_max]))
        elif low == "x-polyfn-function-error":
            try:
                error = json.loads(body)
            except ValueError:
                error = None
            if not isinstance(error, dict):
                error = {"errorType": "Unhandled", "errorMessage": body.decode("utf-8", "replace")[:1000], "stackTrace": []}
        else:
            rest.append((k, v))
    return rest, error, logs


class Proxy:
    def __init__(self, spec: dict[str, Any], sock: socket.socket):
        self.spec = spec
        self.sock = sock
        self.send_lock = threading.Lock()
        self.logs = Logs(spec.get("log_line_max", 16384), spec.get("log_lines_max", 1000))
        self.local = threading.local()
        self.port = DEFAULT_PORT
        self.child: subprocess.Popen[bytes] | None = None
        self.network = "host network"
        self.dotnet = spec.get("runtime") == "dotnet"
        self.link: HostLink | None = None  # the C# host's pipes (runtimes/dotnet/link.py): no HTTP hop
        self.cancelled: set[int] = set()  # streaming invocations the server cancelled
        self.streaming: dict[int, http.client.HTTPConnection] = {}  # and their connections to the program
        self.websockets: dict[int, wsrelay.Relay] = {}  # WebSockets passed through to the program (wsrelay.py)

    def send(self, msg: Any) -> None:
        data = encode(msg)
        with self.send_lock:
            self.sock.sendall(data)

    def send_chunk(self, inv_id: int, data: bytes) -> None:
        head, _ = encode_chunk(inv_id, data)
        with self.send_lock:
            self.sock.sendall(head)
            self.sock.sendall(data)

    def relay(self, inv: Invoke, resp: http.client.HTTPResponse, headers: list[tuple[str, str]],
              c: http.client.HTTPConnection, t0: float) -> Result:
        """Stream `resp` to the server as its pieces arrive (read1: whatever the program has sent, at most
        256 KiB); a cancel closes the connection to the program."""
        self.streaming[inv.id] = c  # (before the head: the server's Cancel can only follow the head)
        self.send(Head(inv.id, resp.status, headers))
        error = None
        try:
            while inv.id not in self.cancelled:
                data = resp.read1(262144)
                if not data:
                    break
                self.send_chunk(inv.id, data)
        except (http.client.HTTPException, OSError, ValueError) as e:
            if inv.id not in self.cancelled:
                error = {"errorType": "Runtime.UpstreamError",
                         "errorMessage": f"the HTTP server's stream broke off: {type(e).__name__}: {e}", "stackTrace": []}
        self.streaming.pop(inv.id, None)
        if inv.id in self.cancelled or error is not None or not resp.isclosed():
            c.close()  # (the program sees its client go; the next request opens a new connection)
            self.local.conn = None
        self.cancelled.discard(inv.id)
        return Result(inv.id, resp.status, [], b"", error, self.logs.end(inv.id), (time.perf_counter() - t0) * 1000)

    def init_error(self, etype: str, message: str) -> None:
        self.send(InitError({"errorType": etype, "errorMessage": message, "stackTrace": []},
                            self.logs.end(-1)))

    def start(self) -> bool:
        spec = self.spec
        t0 = time.perf_counter()
        if spec.get("sandbox_network"):  # the sandbox already made a private namespace (network none/polyfn)
            self.network = "private network namespace (" + spec["sandbox_network"] + ")"
            if spec["sandbox_network"] in ("polyfn", "egress"):  # polyfn's ports are relayed there
                self.port = default_or_free_port()
        elif spec.get("private_network", True) and os.geteuid() == 0:
            why = private_network()
            if why is None:
                self.network = "private network namespace (loopback only)"
            else:
                self.port = free_port()
                self.network = f"host network ({why})"
        else:
            self.port = free_port()
        revision = int(spec.get("revision", 1))
        env = {**os.environ, **spec.get("env", {}),
               "PORT": str(self.port), "K_SERVICE": spec["function"], "K_CONFIGURATION": spec["function"],
               "K_REVISION": f"{spec['function']}-{revision:05d}",
               "POLYFN_FUNCTION_NAME": spec["function"], "POLYFN_FUNCTION_REVISION": str(revision)}
        env.pop("POLYFN_FD", None)
        if spec.get("deps_dir"):
            env["PYTHONPATH"] = spec["deps_dir"]
        else:
            env.pop("PYTHONPATH", None)
        pass_fds: tuple[int, ...] = ()
        if spec.get("runtime") == "dotnet":  # the C# host serving one [FunctionName] of the deploy-time build
            argv = dotnet.host_command(shutil.which("mono") or "mono", spec.get("build_dir", ""), spec["handler"],
                                       spec.get("dotnet_aot", ""))
            self.link = HostLink()
            pass_fds = self.link.child_fds()
            env.update(dotnet.MONO_ENV, **self.link.env(), POLYFN_CONCURRENCY=str(spec.get("concurrency", 1)))
        else:
            argv = resolve_command(spec["handler"], spec["code_dir"], spec.get("build_dir", ""), env)
        self.logs.begin(-1)
        try:
            self.child = subprocess.Popen(argv, cwd=spec["code_dir"], env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=child_preexec,
                                          pass_fds=pass_fds)
        except OSError as e:
            self.init_error("Runtime.StartFailed", f"cannot start {shlex.join(argv)}: {e.strerror or e}")
            return False
        for pipe, name in ((self.child.stdout, "stdout"), (self.child.stderr, "stderr")):
            threading.Thread(target=self.logs.pump, args=(pipe, name), daemon=True).start()
        deadline = time.monotonic() + float(spec.get("ready_timeout", 10.0))
        if self.link is not None:
            self.link.started()
            why, _ = host_ready(self.link, deadline)
            if why:
                if self.child.poll() is None:
                    self.child.kill()
                code = self.child.wait()
                time.sleep(0.05)  # let the pumps read the last lines
                self.init_error("Runtime.HostError", f"{shlex.join(argv)}: {why} (exit code {code}); its stderr "
                                "ended with:\n" + "\n".join(self.logs.tail))
                return False
            self.link.serve_replies(int(spec.get("concurrency", 1)))
        while self.link is None:
            code = self.child.poll()
            if code is not None:
                time.sleep(0.05)  # let the pumps read the last lines
                self.init_error("Runtime.ExitError", f"{shlex.join(argv)} exited with code {code} before listening "
                                f"on port {self.port}; its stderr ended with:\n" + "\n".join(self.logs.tail))
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.child.kill()
                time.sleep(0.05)
                self.init_error("Runtime.PortTimeout", f"{shlex.join(argv)} did not open port {self.port} "
                                f"within {spec.get('ready_timeout', 10.0):.1f} s (it must listen on $PORT); "
                                "its stderr ended with:\n" + "\n".join(self.logs.tail))
                return False
            time.sleep(0.01)
        where = "pipes" if self.link is not None else f"port {self.port}, {self.network}"
        info = (f"http server `{shlex.join(argv)}` (pid {self.child.pid}) on {where}; sandbox: {spec.get('sandbox', '')}")
        first = self.logs.end(-1)
        self.logs.loose = first + self.logs.loose
        # 0: the launcher knows our pid (in a pid namespace getpid() means nothing to the server)
        self.send(Ready(0, (time.perf_counter() - t0) * 1000, info))
        threading.Thread(target=self.watch_child, daemon=True).start()
        return True

    def watch_child(self) -> None:
        assert self.child is not None
        self.exit_like(self.child.wait())

    @staticmethod
    def exit_like(code: int) -> None:
        """The program ended: end the instance with its status (signals as 128+N, as shells report them).
        SIGSYS (the seccomp filter killed it) is passed on as the signal itself, so the server looks up
        which call it was (sandbox/auditlog.py) as for any instance killed by the filter."""
        if code == -signal.SIGSYS:  # (its action is the default one; the mask we inherited may block it)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGSYS})
            signal.pthread_kill(threading.get_ident(), signal.SIGSYS)
        os._exit(code if code >= 0 else 128 - code)

    def conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=None)
            self.local.conn = c
        return c

    def forward(self, inv: Invoke) -> Result:
        if self.link is not None:
            return dotnethost.forward(self, inv, self.link)
        t0 = time.perf_counter()
        self.logs.begin(inv.id)
        if inv.kind == "websocket":  # a client's WebSocket upgrade, for the program (wsrelay.py)
            return wsrelay.run(self, inv, self.port, self.websockets, t0)
        if inv.kind == "h2c":  # a client's h2c connection, for the program (h2c.py; its relay kept with those)
            return h2c.run(self, inv, self.port, self.websockets, t0)
        target = inv.path or "/"
        if inv.query:
            target += "?" + inv.query
        headers = request_headers(inv.headers)
        method = inv.method or "POST"
        for attempt in range(2):
            c = self.conn()
            try:
                c.putrequest(method, target, skip_host=any(k.lower() == "host" for k, _ in headers),
                             skip_accept_encoding=True)
                for k, v in headers:
                    c.putheader(k, v)
                if inv.body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                    c.putheader("Content-Length", str(len(inv.body)))
                if inv.kind != "http" and inv.content_type and not any(k.lower() == "content-type" for k, _ in headers):
                    c.putheader("Content-Type", inv.content_type)
                c.endheaders(inv.body or None)
                resp = c.getresponse()
                out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP and k.lower() != "content-length"]
                if resp.chunked or (resp.length is None and "event-stream" in (resp.getheader("content-type") or "")):
                    return self.relay(inv, resp, out_headers, c, t0)
                body = resp.read()
                logs = self.logs.end(inv.id)
                error = None
                if any(k.lower() in OWN for k, _ in out_headers):
                    out_headers, error, own = own_headers(out_headers, body, self.logs.line_max)
                    logs = logs + own
                return Result(inv.id, resp.status, out_headers, body, error, logs, (time.perf_counter() - t0) * 1000)
            except (http.client.HTTPException, OSError) as e:
                c.close()
                self.local.conn = None
                if self.child is not None:
                    try:
                        self.exit_like(self.child.wait(0.2))  # the program died under this request
                    except subprocess.TimeoutExpired:
                        pass
                if attempt == 0 and isinstance(e, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError):
                    continue  # the server closed an idle keep-alive connection: retry once on a new one
                err = {"errorType": "Runtime.UpstreamError",
                       "errorMessage": f"the HTTP server failed to answer: {type(e).__name__}: {e}", "stackTrace": []}
                return Result(inv.id, 502, [("content-type", "application/json")], json.dumps(err).encode(), err,
                              self.logs.end(inv.id), (time.perf_counter() - t0) * 1000)
        raise AssertionError("unreachable")

    def serve(self) -> None:
        pool = ThreadPoolExecutor(max(1, int(self.spec.get("concurrency", 1))), thread_name_prefix="fwd")
        reader = self.sock.makefile("rb", buffering=65536)
        # The C# host serving one invocation at a time (it never streams): each is relayed on this thread, with
        # no hand-off to a worker thread and back.
        inline = self.link is not None and int(self.spec.get("concurrency", 1)) <= 1

        def one(inv: Invoke) -> None:
            try:
                self.send(self.forward(inv))
            except OSError:
                os._exit(0)

        while True:
            head = reader.read(4)
            if len(head) < 4:
                break
            (size,) = HEADER.unpack(head)
            if size > MAX_FRAME:
                break
            inv = to_instance_decoder.decode(reader.read(size))
            if type(inv) is Chunk:  # a passed-through WebSocket's client sent something (wsrelay.py)
                relay = self.websockets.get(inv.id)
                if relay is not None:
                    relay.upstream(bytes(inv.data))
                continue
            if type(inv) is Cancel:  # its client went: the read of the program's response ends now
                relay = self.websockets.get(inv.id)
                if relay is not None:
                    relay.close()
                c = self.streaming.get(inv.id)
                if c is not None:  # (else it ended already)
                    self.cancelled.add(inv.id)
                if c is not None and c.sock is not None:
                    try:
                        c.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                continue
            if inline:
                one(inv)
            else:
                pool.submit(one, inv)
        if self.child is not None:
            self.child.kill()
        os._exit(0)


def blank_main(sock: socket.socket) -> None:
    """A pre-started C# instance: the host starts now (shims loaded, warmed up), its function comes later
    as the first frame; the sandbox's agent then mounts the function's files and opens the gate, and the
    host and this proxy both become the function's uid before any of its code loads (runtimes/dotnet)."""
    t_boot = time.perf_counter()
    shims = os.environ.pop("POLYFN_DOTNET_SHIMS")
    link = HostLink()
    env = {k: v for k, v in os.environ.items() if k not in ("POLYFN_FD", "POLYFN_GATE_FD", "PYTHONPATH")}
    env.update(dotnet.MONO_ENV, **link.env())
    child = subprocess.Popen(dotnet.blank_command(shutil.which("mono") or "mono", shims), cwd="/", env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=child_preexec, pass_fds=link.child_fds())
    link.started()
    (size,) = HEADER.unpack(recv_exact(sock, 4))
    spec = json.loads(recv_exact(sock, size))
    t0 = time.perf_counter()
    proxy = Proxy(spec, sock)
    proxy.child, proxy.link = child, link
    gate = read_gate()
    t_gate = time.perf_counter()
    spec["sandbox"] = str(gate.get("sandbox", ""))
    if not gate.get("ok"):
        child.kill()
        proxy.init_error("Runtime.SandboxError", str(gate.get("error")))
        return
    uid, gid = int(gate.get("uid") or 0), int(gate.get("gid") or 0)
    revision = int(spec.get("revision", 1))
    job = {"assembly": os.path.join(spec.get("build_dir", ""), dotnet.FUNCTION_DLL), "name": spec["handler"],
           "uid": uid, "gid": gid, "cwd": spec["code_dir"], "concurrency": int(spec.get("concurrency", 1)),
           "env": {**spec.get("env", {}), "POLYFN_FUNCTION_NAME": spec["function"],
                   "POLYFN_FUNCTION_REVISION": str(revision)}}
    assert child.stdout is not None and child.stderr is not None
    ready: dict[str, Any] = {}
    try:
        link.send({"job": job})
    except OSError as e:
        why = f"it exited ({e})"
    else:
        why, ready = host_ready(link, time.monotonic() + float(spec.get("ready_timeout", 10.0)))
    if why:
        child.kill()
        tail = child.stderr.read().decode("utf-8", "replace")[-2000:]
        proxy.init_error("Runtime.HostError", f"the C# host did not start the function: {why}\n{tail}")
        return
    t_host = time.perf_counter()
    if uid:
        if os.getgroups():
            os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    os.chdir(spec["code_dir"])
    link.serve_replies(int(spec.get("concurrency", 1)))
    info = (f"pre-started C# host (pid {child.pid}, booted {(t0 - t_boot) * 1000:.0f} ms before its function; "
            f"hand-over: sandbox {(t_gate - t0) * 1000:.1f} ms, host {(t_host - t_gate) * 1000:.1f} ms "
            f"({phases(ready.get('ms'))}), proxy {(time.perf_counter() - t_host) * 1000:.1f} ms); "
            f"sandbox: {spec['sandbox']}")
    proxy.send(Ready(0, (time.perf_counter() - t0) * 1000, info))
    for pipe, name in ((child.stdout, "stdout"), (child.stderr, "stderr")):
        threading.Thread(target=proxy.logs.pump, args=(pipe, name), daemon=True).start()
    threading.Thread(target=proxy.watch_child, daemon=True).start()
    proxy.serve()


def main() -> None:
    raw = sys.argv[1] if len(sys.argv) > 1 else os.environ.pop("POLYFN_SPEC", "")
    if not raw:  # a pre-started C# instance, waiting for its function (launcher.py, agent mode)
        blank_main(socket.socket(fileno=int(os.environ["POLYFN_FD"])))
        return
    spec = json.loads(raw)
    info = os.environ.pop("POLYFN_SANDBOX_INFO", "")
    if info:
        spec["sandbox"] = info
    sock = socket.socket(fileno=int(os.environ["POLYFN_FD"]))
    os.chdir(spec["code_dir"])
    proxy = Proxy(spec, sock)
    if not proxy.start():
        if proxy.child is not None and proxy.child.poll() is None:
            proxy.child.kill()
        sock.close()
        return
    proxy.serve()


if __name__ == "__main__":
    main()
