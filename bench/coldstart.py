"""Cold start: no instance of the function → its first HTTP response, against a fresh interpreter.

Each polyfn sample is forced cold: the function is redeployed (`PUT /v1/functions/cold` with a changed
comment, so the code hash differs) → a new revision with a new, empty pool → `GET /fn/cold` must start an
instance. The time is taken client-side over a persistent connection (TCP setup is not counted), and the
response must carry `x-polyfn-cold: true`. The server's own view (`init_ms`, `wait_ms`, `duration_ms` of
each activation) is read back from `GET /v1/activations/ID` afterwards.

The peers, measured in the same run and interleaved with the polyfn samples:
  * a fresh interpreter running a tiny stdlib HTTP server that imports the same handler file, timed from
    spawn to its first response (the listening socket is made by the benchmark and inherited, so the
    request waits in the kernel's backlog instead of polling for a port: the peer's best case);
  * a fresh interpreter that imports the handler and calls it once (`python -c`), spawn to exit.

    .venv/bin/python bench/coldstart.py            # 200 polyfn samples, 40 of each peer (~30 s)
    .venv/bin/python bench/coldstart.py --quick    # 30 and 10 (~10 s)

A second section (`--zygote-samples N`, 0 skips it; `--zygote-only` runs only it) measures cold starts
once the revision's per-function zygote exists (its instance is killed, then `GET`: the instance is forked
from the zygote, module already imported) for the trivial function and ones importing numpy and Pillow
(`--heavy`; deployed with a requirements.txt, installed once by the deploy), alternating with the first cold
start of a new revision of the same code (redeploy → `GET` at once, and → 0.5 s → `GET`), a brand-new
function's first start and a fresh interpreter importing the package, in the same run. After each start from
the zygote the same instance is called again after `--settle` s of idle: a warm call after the same idle, the
floor under the start on a VM whose caches other tenants empty while it idles (its row, "the floor").
"""

from __future__ import annotations

import argparse
import http.client
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    HELLO_NATIVE,
    Http,
    PolyfnServer,
    fmt,
    percentile,
    print_header,
    table,
    temp_dir,
)

PEER_HTTP_SERVER = """\
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, sys.argv[1])
from handler import handler


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(handler(None, None)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=int(sys.argv[2]))
server.handle_request()
"""

PEER_CALL_ONCE = "import sys; sys.path.insert(0, sys.argv[1]); from handler import handler; handler(None, None)"


def polyfn_sample(server: PolyfnServer, client: Http, i: int, settle: float) -> tuple[float, float, str, bool]:
    """Redeploy (new revision, empty pool), then time the first request and a second, warm one."""
    server.deploy("cold", {"handler.py": HELLO_NATIVE + f"# sample {i}\n"})
    time.sleep(settle)  # let the previous revision's drain and the zygote's re-fork finish first
    t0 = time.perf_counter()
    status, headers, body = client.request("GET", "/fn/cold")
    cold_ms = (time.perf_counter() - t0) * 1000
    if status != 200 or body != b"Hello World!":
        raise RuntimeError(f"cold request {i}: {status} {body[:300]!r}\n{server.log_tail()}")
    is_cold = headers.get("x-polyfn-cold") == "true"
    t0 = time.perf_counter()
    status, _, body = client.request("GET", "/fn/cold")
    warm_ms = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise RuntimeError(f"warm request {i}: {status} {body[:300]!r}")
    return cold_ms, warm_ms, headers.get("x-polyfn-activation-id", ""), is_cold


def clean_sample(server: PolyfnServer, client: Http, i: int, settle: float) -> tuple[float, str]:
    """A function's first deploy → its first request: no revision of it was served on this node, so no
    function zygote exists (nor is one built at deploy): a clean start through the runtime zygote's blank.
    The function is deleted afterwards (its zygote, built after the start, with it)."""
    name = f"clean{i + 1}"
    server.deploy(name, {"handler.py": HELLO_NATIVE})
    time.sleep(settle)
    t0 = time.perf_counter()
    status, headers, body = client.request("GET", f"/fn/{name}")
    ms = (time.perf_counter() - t0) * 1000
    if status != 200 or body != b"Hello World!" or headers.get("x-polyfn-cold") != "true":
        raise RuntimeError(f"clean start {i}: {status} {body[:300]!r}\n{server.log_tail()}")
    server.api.json("DELETE", f"/v1/functions/{name}")  # type: ignore[union-attr]
    return ms, headers.get("x-polyfn-activation-id", "")


def peer_http_sample(python: str, script: Path, code_dir: Path) -> float:
    """Spawn a fresh interpreter serving the handler over HTTP; time spawn → first response."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, str(script), str(code_dir), str(fd)], pass_fds=[fd])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            ms = (time.perf_counter() - t0) * 1000
        finally:
            conn.close()
            proc.wait(30)
    if resp.status != 200 or body != b"Hello World!":
        raise RuntimeError(f"peer HTTP server answered {resp.status} {body[:200]!r}")
    return ms


def peer_call_sample(python: str, code_dir: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", PEER_CALL_ONCE, str(code_dir)], check=True)
    return (time.perf_counter() - t0) * 1000


def stats_row(name: str, values: list[float], ref_p50: float | None = None) -> list[str]:
    p50 = percentile(values, 50)
    ratio = f"{p50 / ref_p50:.1f}×" if ref_p50 else "1.0× (reference)"
    return [name, str(len(values)), fmt(min(values)), fmt(p50), fmt(percentile(values, 90)),
            fmt(percentile(values, 99)), fmt(statistics.fmean(values)), ratio]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--samples", type=int, default=200, help="polyfn cold starts to measure")
    ap.add_argument("--peer-samples", type=int, default=40, help="samples of each fresh-interpreter peer")
    ap.add_argument("--settle", type=float, default=0.1,
                    help="seconds between a redeploy and its measured request")
    ap.add_argument("--python", default=sys.executable, help="interpreter the peers spawn")
    ap.add_argument("--quick", action="store_true", help="a short run: 30 polyfn samples, 10 per peer")
    ap.add_argument("--zygote-samples", type=int, default=40,
                    help="cold starts from a per-function zygote, trivial and numpy functions (0: skip)")
    ap.add_argument("--zygote-only", action="store_true", help="only the per-function zygote section")
    ap.add_argument("--heavy", default="np,pil",
                    help="heavy functions of the zygote section, installed from a requirements.txt at deploy: "
                         "np (numpy), pil (Pillow), sk (scikit-learn: a model fitted at import), comma-separated; '' for none")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.peer_samples, args.zygote_samples = 30, 10, 10
    if args.zygote_only:
        zygote_section(args)
        return

    print_header("cold start: no instance → first HTTP response")
    cold: list[float] = []
    warm: list[float] = []
    clean: list[float] = []
    ids: list[str] = []
    clean_ids: list[str] = []
    not_cold = 0
    peer_http: list[float] = []
    peer_call: list[float] = []
    peer_every = max(1, args.samples // max(args.peer_samples, 1))

    with temp_dir("polyfn-bench-peer-") as tmp, PolyfnServer() as server:
        code_dir = tmp / "code"
        code_dir.mkdir()
        (code_dir / "handler.py").write_text(HELLO_NATIVE)
        script = tmp / "peer_server.py"
        script.write_text(PEER_HTTP_SERVER)
        client = Http(server.port)
        try:
            # Unmeasured warm-up of every path (page cache, pyc of the stdlib, the zygote's blanks).
            polyfn_sample(server, client, -1, args.settle)
            clean_sample(server, client, -1, args.settle)
            peer_http_sample(args.python, script, code_dir)
            peer_call_sample(args.python, code_dir)
            for i in range(args.samples):
                c, w, act_id, is_cold = polyfn_sample(server, client, i, args.settle)
                cold.append(c)
                warm.append(w)
                ids.append(act_id)
                not_cold += not is_cold
                ms, act_id = clean_sample(server, client, i, args.settle)
                clean.append(ms)
                clean_ids.append(act_id)
                if i % peer_every == 0 and len(peer_http) < args.peer_samples:
                    peer_http.append(peer_http_sample(args.python, script, code_dir))
                    peer_call.append(peer_call_sample(args.python, code_dir))
            while len(peer_http) < args.peer_samples:
                peer_http.append(peer_http_sample(args.python, script, code_dir))
                peer_call.append(peer_call_sample(args.python, code_dir))
            acts = [server.api.json("GET", f"/v1/activations/{a}") for a in ids if a]  # type: ignore[union-attr]
            infos = {m.group(0) for a in ids[-5:] + clean_ids[-5:] if a and (m := re.search(
                r"zygote: \w+", server.api.json("GET", f"/v1/activations/{a}").get("init_info", "")))}  # type: ignore[union-attr]
        finally:
            client.close()
        isolation = server.isolation

    p50 = percentile(cold, 50)
    print(f"polyfn: instance isolation: {isolation}; peers run {args.python}")
    print("client-side milliseconds; ratio = the row's p50 / polyfn cold start p50\n")
    print(table(
        ["what", "n", "min", "p50", "p90", "p99", "mean", "ratio"],
        [
            stats_row("polyfn cold start (redeploy → first GET /fn/cold)", cold),
            stats_row("polyfn clean start (a new function's first deploy → first GET)", clean, p50),
            stats_row("polyfn warm request (second GET, same instance)", warm, p50),
            stats_row("fresh interpreter + stdlib HTTP server (spawn → 1st response)", peer_http, p50),
            stats_row("fresh interpreter, import + call handler (spawn → exit)", peer_call, p50),
        ],
    ))
    if not_cold:
        print(f"\nwarning: {not_cold} polyfn samples were not marked x-polyfn-cold: true")
    print("\nstarted from (init info of the last samples of both rows): " + ", ".join(sorted(infos)))

    print("\nserver-side view of the same cold activations (GET /v1/activations/ID), milliseconds\n")
    rows = []
    for field, what in (("init_ms", "instance start → ready (spawn, import, handshake)"),
                        ("wait_ms", "invocation waited for its instance"),
                        ("run_ms", "handler run"),
                        ("duration_ms", "invocation total, server-side")):
        vals = [a[field] for a in acts if a.get(field) is not None]
        if vals:
            rows.append([field, what, fmt(min(vals)), fmt(percentile(vals, 50)), fmt(percentile(vals, 90)),
                         fmt(percentile(vals, 99))])
    print(table(["field", "meaning", "min", "p50", "p90", "p99"], rows))

    ratio = percentile(peer_http, 50) / p50
    print(f"\ntarget p50 ≤ 5 ms: {fmt(p50)} ms → {'met' if p50 <= 5 else 'NOT met'}")
    print(f"target ≥ 10× faster than a fresh interpreter serving HTTP: {ratio:.1f}× → "
          f"{'met' if ratio >= 10 else 'NOT met'}")
    p99 = percentile(cold, 99)
    print(f"target (issue 24) a new revision's first start ≤ 4 ms: p50 {fmt(p50)}, p99 {fmt(p99)} ms → "
          f"{'met' if p50 <= 4 else 'NOT met'}")
    if args.zygote_samples:
        zygote_section(args)


NUMPY_HANDLER = "import numpy\ndef handler(event, context):\n    return str(int(numpy.arange(10).sum()))\n"
PILLOW_HANDLER = ("from PIL import Image\ndef handler(event, context):\n"
                  "    return str(Image.new('RGB', (45, 1)).size[0])\n")
SKLEARN_HANDLER = ("import numpy\nfrom sklearn.linear_model import LinearRegression\n"
                   "MODEL = LinearRegression().fit(numpy.arange(10).reshape(-1, 1), numpy.arange(10))\n"
                   "def handler(event, context):\n    return str(int(round(MODEL.predict([[45]])[0])))\n")
HEAVY_CALL_ONCE = ("import sys; sys.path.insert(0, sys.argv[1]); from handler import handler; "
                   "assert handler(None, None) == '45'")
#: name → (label, handler.py, requirements.txt, expected body). The heavy functions get their package the way
#: a user's would: a requirements.txt the deploy installs (pip, from the node's index) into deps/SHA, once;
#: every later revision with the same requirements reuses it.
FUNCS = {
    "hello": ("trivial function", HELLO_NATIVE, "", b"Hello World!"),
    "np": ("function importing numpy", NUMPY_HANDLER, "numpy\n", b"45"),
    "pil": ("function importing Pillow", PILLOW_HANDLER, "Pillow\n", b"45"),
    "sk": ("scikit-learn model", SKLEARN_HANDLER, "scikit-learn\n", b"45"),
}


def files_of(fname: str, comment: str = "") -> dict[str, str]:
    _, code, reqs, _ = FUNCS[fname]
    return {"handler.py": code + comment, **({"requirements.txt": reqs} if reqs else {})}


def kill_instances(server: PolyfnServer, name: str) -> None:
    """SIGKILL every live instance of `name` (the benchmark runs as the server's user) and wait until the
    pool has forgotten them: the next request is a cold start from the revision's function zygote."""
    import os
    import signal

    for inst in server.api.json("GET", f"/v1/functions/{name}/instances")["instances"]:  # type: ignore[union-attr]
        os.kill(inst["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.api.json("GET", f"/v1/functions/{name}/instances")["instances"]:  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise RuntimeError(f"instances of {name} did not go away")
        time.sleep(0.005)


def wait_zygote(server: PolyfnServer, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        z = server.api.json("GET", f"/v1/functions/{name}")["scaling"]["zygote"]  # type: ignore[index]
        if z and z["state"] == "ready":
            return
        if time.monotonic() > deadline or (z and z["state"].startswith("none (")):
            raise RuntimeError(f"no function zygote for {name}: {z}")
        time.sleep(0.02)


def reconnect_if_idle(http: Http, idle_ms: float) -> None:
    """The server closes a connection idle for 5 s (POLYFN_HTTP_KEEPALIVE_TIMEOUT): after a long deploy or a
    slow start, connect again before the next (timed) request, untimed, so TCP setup is never counted."""
    if idle_ms > 2000:
        http.conn.close()
        http.request("GET", "/healthz")


def timed_get(server: PolyfnServer, client: Http, name: str, expect: bytes) -> tuple[float, dict[str, str]]:
    t0 = time.perf_counter()
    status, headers, body = client.request("GET", f"/fn/{name}")
    ms = (time.perf_counter() - t0) * 1000
    if status != 200 or body != expect or headers.get("x-polyfn-cold") != "true":
        raise RuntimeError(f"{name}: {status} {headers.get('x-polyfn-cold')} {body[:300]!r}\n{server.log_tail()}")
    return ms, headers


def zygote_sample(server: PolyfnServer, client: Http, name: str, expect: bytes) -> tuple[float, float, str]:
    """One cold start from the function zygote: (client ms, server init_ms, init_info)."""
    kill_instances(server, name)
    time.sleep(0.02)
    ms, headers = timed_get(server, client, name, expect)
    act = server.api.json("GET", f"/v1/activations/{headers.get('x-polyfn-activation-id')}")  # type: ignore[union-attr]
    return ms, act.get("init_ms") or 0.0, act.get("init_info", "")


def idle_warm_sample(server: PolyfnServer, client: Http, name: str, expect: bytes, idle: float) -> float:
    """The instance a start from the zygote just made, called again after `idle` s of nothing: the same path
    without the start (ms). On a VM whose caches other tenants empty within ~20 ms of idle, this is the floor
    under a start from the zygote (docs/performance.md, "cold10")."""
    time.sleep(idle)
    t0 = time.perf_counter()
    status, headers, body = client.request("GET", f"/fn/{name}")
    ms = (time.perf_counter() - t0) * 1000
    if status != 200 or body != expect or headers.get("x-polyfn-cold") == "true":
        raise RuntimeError(f"{name}: {status} {headers.get('x-polyfn-cold')} {body[:300]!r}\n{server.log_tail()}")
    return ms


def revision_sample(server: PolyfnServer, fname: str, name: str, i: int, pause: float,
                    client: Http) -> tuple[float, float, str]:
    """Redeploy `name` (a new revision of a function the node serves: its zygote is built at deploy), wait
    `pause` s, then time its first call: (deploy ms, first call ms, init info)."""
    t0 = time.perf_counter()
    server.deploy(name, files_of(fname, f"# sample {i}\n"))
    deploy_ms = (time.perf_counter() - t0) * 1000
    if pause:
        time.sleep(pause)
    reconnect_if_idle(client, deploy_ms + pause * 1000)
    ms, headers = timed_get(server, client, name, FUNCS[fname][3])
    reconnect_if_idle(server.api, ms)  # type: ignore[arg-type]
    act = server.api.json("GET", f"/v1/activations/{headers.get('x-polyfn-activation-id')}")  # type: ignore[union-attr]
    return deploy_ms, ms, act.get("init_info", "")


def newcomer_sample(server: PolyfnServer, fname: str, i: int, client: Http) -> tuple[float, str]:
    """A brand-new function (first deploy on the node, requirements already installed, the same as a served
    function's): its first call is a clean start, from the layer's package zygote when the node has one (the
    package already imported), else importing the package. Deleted afterwards. (ms, its init info)"""
    name = f"new{fname}{i + 1}"
    t0 = time.perf_counter()
    server.deploy(name, files_of(fname))
    time.sleep(0.1)
    reconnect_if_idle(client, (time.perf_counter() - t0) * 1000)
    ms, headers = timed_get(server, client, name, FUNCS[fname][3])
    reconnect_if_idle(server.api, ms)  # type: ignore[arg-type]
    act = server.api.json("GET", f"/v1/activations/{headers.get('x-polyfn-activation-id')}")  # type: ignore[union-attr]
    server.api.json("DELETE", f"/v1/functions/{name}")  # type: ignore[union-attr]
    return ms, act.get("init_info", "")


def zygote_section(args: argparse.Namespace) -> None:
    """Cold starts once the revision's function zygote exists (no instance → first response, the module
    already imported in the zygote), for the trivial function and the heavy ones, against the first cold
    start of a new revision (redeploy: its zygote built at deploy) in the same run; for the heavy ones also
    a new revision called 0.5 s after its deploy, a brand-new function's first start and a fresh interpreter."""
    import os

    print_header("cold start from a per-function zygote (import cache) vs. a new revision's first start")
    funcs = ["hello"] + [f for f in ("np", "pil", "sk") if f in args.heavy.split(",")]
    rows: dict[str, list[float]] = {}
    infos: set[str] = set()
    deps: dict[str, str] = {}
    load = [os.getloadavg()[0]]
    with PolyfnServer() as server:
        client = Http(server.port)
        try:
            for fname in list(funcs):
                t0 = time.perf_counter()
                try:
                    server.deploy(f"z{fname}", files_of(fname))  # the heavy ones: pip installs the package once
                except RuntimeError as e:
                    print(f"\n{fname} rows skipped: its deploy failed ({str(e)[:300]})")
                    funcs.remove(fname)
                    continue
                if FUNCS[fname][2]:
                    print(f"{FUNCS[fname][0]}: first deploy (pip install of {FUNCS[fname][2].strip()}) {time.perf_counter() - t0:.1f} s")
                    deps[fname] = next((str(d.parent) for d in (Path(server.tmp.name) / "data" / "deps").glob(  # type: ignore[union-attr]
                        "*/.requirements.txt") if d.read_text() == FUNCS[fname][2]), "")
                client.conn.close()  # idle through the install: the server may have closed it (keep-alive 5 s)
                status, _, body = client.request("GET", f"/fn/z{fname}")  # first start: builds the zygote
                if status != 200:
                    raise RuntimeError(f"z{fname}: {status} {body[:300]!r}")
                wait_zygote(server, f"z{fname}")
                if fname != "hello":  # the r-function: served (its zygote exists), so redeploys build at deploy
                    for r in ("r", "p"):
                        server.deploy(f"{r}{fname}", files_of(fname))
                        client.request("GET", f"/fn/{r}{fname}")
            client.request("GET", "/fn/zhello")
            server.deploy("rhello", files_of("hello"))
            client.request("GET", "/fn/rhello")
            for i in range(-1, args.zygote_samples):  # -1: unmeasured warm-up; the kinds alternate
                for fname in funcs:
                    expect = FUNCS[fname][3]
                    got: dict[str, float] = {}
                    got["z"], got["zinit"], info = zygote_sample(server, client, f"z{fname}", expect)
                    got["zwarm"] = idle_warm_sample(server, client, f"z{fname}", expect, args.settle)
                    got["rdeploy"], got["r"], rinfo = revision_sample(server, fname, f"r{fname}", i, 0.0, client)
                    got["rtot"] = got["rdeploy"] + got["r"]
                    if fname == "hello":
                        time.sleep(args.settle)
                    else:
                        time.sleep(0.3)  # the previous revision's drain
                        got["pdeploy"], got["p"], _ = revision_sample(server, fname, f"p{fname}", i, 0.5, client)
                        got["new"], ninfo = newcomer_sample(server, fname, i, client)
                        if i >= 0:
                            infos.add(f"{fname}: brand-new function: " + next(
                                (z for z in ("zygote: package", "zygote: runtime") if z in ninfo), ninfo[:60]))
                        # the peer: a fresh interpreter importing the same installed package and calling the handler
                        peer_dir = Path(server.tmp.name) / f"{fname}-peer"  # type: ignore[union-attr]
                        peer_dir.mkdir(exist_ok=True)
                        (peer_dir / "handler.py").write_text(FUNCS[fname][1])
                        env = {**os.environ, "PYTHONPATH": deps.get(fname, "")}
                        t1 = time.perf_counter()
                        subprocess.run([args.python, "-c", HEAVY_CALL_ONCE, str(peer_dir)], check=True, env=env)
                        got["peer"] = (time.perf_counter() - t1) * 1000
                        reconnect_if_idle(client, got["peer"])
                        reconnect_if_idle(server.api, got["peer"])  # type: ignore[arg-type]
                    if i >= 0:
                        for k, v in got.items():
                            rows.setdefault(f"{k}{fname}", []).append(v)
                        infos.add(f"{fname}: " + ("zygote: function" if "zygote: function" in info else info[:60])
                                  + "; new revision: " + ("zygote: function" if "zygote: function" in rinfo
                                                          else rinfo[:60]))
                load.append(os.getloadavg()[0])
        finally:
            client.close()
    out = []
    for fname in funcs:
        label = FUNCS[fname][0]
        ref = percentile(rows[f"z{fname}"], 50)
        out.append(stats_row(f"{label}: from its function zygote (kill instance → GET)", rows[f"z{fname}"]))
        out.append(stats_row("  of which server-side init_ms", rows[f"zinit{fname}"], ref))
        out.append(stats_row(f"  the same instance's next call after {args.settle:g} s idle (warm: the floor)",
                             rows[f"zwarm{fname}"], ref))
        out.append(stats_row(f"{label}: new revision's first start (redeploy → GET at once)", rows[f"r{fname}"], ref))
        out.append(stats_row("  the redeploy (PUT) before it", rows[f"rdeploy{fname}"], ref))
        out.append(stats_row("  redeploy → first response, in all", rows[f"rtot{fname}"], ref))
        if fname != "hello":
            out.append(stats_row("  new revision, GET 0.5 s after the redeploy", rows[f"p{fname}"], ref))
            out.append(stats_row("  brand-new function, same packages as a served one (deploy → GET)",
                                 rows[f"new{fname}"], ref))
            out.append(stats_row("  fresh interpreter, import + call handler (spawn → exit)", rows[f"peer{fname}"], ref))
    print("client-side milliseconds; ratio = the row's p50 / the zygote row's p50 of the same function\n")
    print(table(["what", "n", "min", "p50", "p90", "p99", "mean", "ratio"], out))
    print("\nstarted from: " + " | ".join(sorted(infos)))
    print(f"load average (1 min) during the section: {min(load):.1f}–{max(load):.1f}")
    for fname in funcs:
        label = FUNCS[fname][0]
        if fname == "hello":
            continue
        p50 = percentile(rows[f"z{fname}"], 50)
        print(f"target (issue) {label} p50 ≤ 10 ms from its zygote: {fmt(p50)} ms → {'met' if p50 <= 10 else 'NOT met'}")
        for k, what in (("r", "called at once after"), ("p", "called 0.5 s after")):
            p50 = percentile(rows[f"{k}{fname}"], 50)
            print(f"target (issue 24 #3) {label}, a new revision's first start ≤ 15 ms ({what} its deploy): "
                  f"p50 {fmt(p50)} ms → {'met' if p50 <= 15 else 'NOT met'}")
        p50 = percentile(rows[f"new{fname}"], 50)
        print(f"target (issue 24 #3) {label}, a brand-new function with the same packages as a served one starts "
              f"≤ 15 ms: p50 {fmt(p50)} ms → {'met' if p50 <= 15 else 'NOT met'}")
    z50, z99 = percentile(rows["zhello"], 50), percentile(rows["zhello"], 99)
    print(f"target (issue 24) trivial function from its zygote p50 ≤ 1.5 ms, p99 ≤ 4 ms: {fmt(z50)} / {fmt(z99)} ms → "
          f"{'met' if z50 <= 1.5 and z99 <= 4 else 'NOT met'}")
    w50 = percentile(rows["zwarmhello"], 50)
    print(f"  (a warm call after the same idle: p50 {fmt(w50)} ms; the start's own share of the p50: {fmt(z50 - w50)} ms)")
    r50 = percentile(rows["rhello"], 50)
    print(f"target (issue 24) trivial function, a new revision's first start ≤ 4 ms: p50 {fmt(r50)} ms → "
          f"{'met' if r50 <= 4 else 'NOT met'}")


if __name__ == "__main__":
    main()
