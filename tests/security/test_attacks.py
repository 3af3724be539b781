"""The attack suite: deployed functions that try to break out. Each test asserts that the attack failed,
that the node stayed healthy and that another function kept answering.

The attacks run inside real instances of a real `polyfn serve`, with every sandbox layer the host allows
(here as root: cgroup, mount/pid/net namespaces, a per-function uid, seccomp, rlimits).
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from polyfn.sandbox import seccomp

from .. import needs
from ..e2e.conftest import Server, error_code
from .conftest import CANARY, KERNEL, require


def healthy(s: Server) -> None:
    assert s.proc.poll() is None, "the server died"
    assert s.http.get("/healthz").status_code == 200
    assert s.http.get("/fn/bystander").text == "still here"


def attack(s: Server, name: str, code: str, payload: dict | None = None, **spec: object) -> dict:
    s.deploy(name, {"handler.py": code}, **spec)
    r = s.api.post(f"/v1/functions/{name}/invoke", json=payload or {})
    assert r.status_code == 200, r.text
    return r.json()


READ = '''
import os
def handler(event, context):
    out = {}
    for path in event["paths"]:
        try:
            with open(path, "rb") as f:
                out[path] = "READ " + f.read(200).decode("latin-1")
        except OSError as e:
            out[path] = type(e).__name__
    for d in event["dirs"]:
        try:
            out[d] = sorted(os.listdir(d))
        except OSError as e:
            out[d] = type(e).__name__
    return out
'''


@pytest.mark.parametrize("layer", sorted(KERNEL))
def test_every_layer_the_kernel_offers_is_on(node: Server, layer: str) -> None:
    """The guard against a quietly dropped layer: where the kernel (asked directly) can provide a layer, the
    server's isolation line must list it; where it cannot, the test skips — and fails under CI=true."""
    require(node, layer)


def test_cannot_read_admin_key_or_other_functions_code(node: Server) -> None:
    require(node, "mount ns")
    node.deploy("victim", {"handler.py": "SECRET = 'victim-secret-4242'\ndef handler(e, c):\n    return 1\n"})
    code = node.data_dir / "code" / "victim"
    victim_files = [str(p) for p in code.rglob("handler.py")]
    assert victim_files, "the victim's code must exist on the host"
    key = str(node.data_dir / "admin.key")
    out = attack(node, "reader", READ, {"paths": [key, *victim_files, str(node.data_dir / "polyfn.db"),
                                                  "/etc/shadow", "/root/.bash_history"],
                                        "dirs": [str(node.data_dir), str(code), "/root"]})
    text = json.dumps(out)
    assert node.key not in text and "victim-secret-4242" not in text and "READ" not in text, out
    assert "victim" not in out[str(node.data_dir)] if isinstance(out[str(node.data_dir)], list) else True
    healthy(node)


def test_cannot_see_or_signal_other_processes(node: Server) -> None:
    require(node, "pid ns")
    out = attack(node, "signaller", '''
import os, signal
def handler(event, context):
    res = {"pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
    for target in (event["server"], event["zygote"], os.getppid(), 1, -1):
        if target == -1 and os.getpid() > 16:  # never without a pid namespace: kill(-1) as root hits the host
            res["-1"] = "skipped"
            continue
        try:
            os.kill(target, signal.SIGKILL)
            res[str(target)] = "sent"
        except OSError as e:
            res[str(target)] = type(e).__name__
    return res
''', {"server": node.proc.pid, "zygote": _zygote_pid(node)})
    assert set(out["pids"]) <= {1, 2}, f"other processes are visible: {out['pids']}"
    assert out[str(node.proc.pid)] == "ProcessLookupError"
    healthy(node)


def _zygote_pid(s: Server) -> int:
    for line in s.log.read_text().splitlines():
        if "zygote pid" in line:
            return int(line.split("zygote pid ")[1].split()[0])
    return 0


def test_killing_its_parent_only_hurts_itself(node: Server) -> None:
    node.deploy("parricide", {"handler.py": '''
import os, signal
def handler(event, context):
    res = {}
    for target in (os.getppid(), 0):
        try:
            os.kill(target, signal.SIGKILL)
            res[str(target)] = "sent"
        except OSError as e:
            res[str(target)] = type(e).__name__
    return res
'''})
    zygote = _zygote_pid(node)
    r = node.http.get("/fn/parricide")
    # Either the kill was refused (its parent belongs to another uid) or it only killed its own group.
    assert r.status_code == 200 or (r.status_code == 502 and error_code(r) == "function_crashed"), r.text
    healthy(node)
    assert zygote and os.path.exists(f"/proc/{zygote}"), "the zygote must survive"


def test_fork_bomb_is_capped(node: Server) -> None:
    require(node, "pids")
    node.deploy("forkbomb", {"handler.py": '''
import os, time
def handler(event, context):
    n = 0
    try:
        while n < 600:  # bounded even if the pids limit were missing
            if os.fork() == 0:
                time.sleep(10)
                os._exit(0)
            n += 1
    except OSError as e:
        return {"forked": n, "error": type(e).__name__}
    return {"forked": n, "error": None}
'''}, timeout=20, memory=2048)  # enough memory that the pids limit, not the memory limit, stops it
    out = node.http.get("/fn/forkbomb").json()
    assert out["error"] == "BlockingIOError" and out["forked"] < 300, out
    healthy(node)
    node.api.delete("/v1/functions/forkbomb")  # its sleeping children go with it (pid namespace)


def test_memory_hog_is_killed_not_the_node(node: Server) -> None:
    node.deploy("hog10x", {"handler.py": '''
def handler(event, context):
    blocks = [bytearray(1024 * 1024) for _ in range(640)]
    return len(blocks)
'''}, memory=64)
    r = node.http.get("/fn/hog10x")
    if not needs.kernel_lacks("cgroup"):  # the host has memory cgroups: the kernel OOM-kills the instance
        assert r.status_code == 502 and error_code(r) == "function_oom", r.text
    else:  # the RLIMIT_AS fallback
        assert r.status_code == 500 and r.json()["errorType"] == "MemoryError", r.text
    healthy(node)


def test_tmp_is_private_and_bounded(node: Server) -> None:
    require(node, "mount ns")
    out = attack(node, "filler", '''
import os
def handler(event, context):
    res = {"before": sorted(os.listdir("/tmp"))}
    mounts = [line.split()[1] for line in open("/proc/self/mounts")]
    if "/tmp" not in mounts or "/dev/shm" not in mounts:  # never fill the host's own /tmp
        return {"error": "no private /tmp", "mounts": mounts}
    for d in ("/tmp", "/dev/shm"):
        written = 0
        try:
            with open(os.path.join(d, "fill"), "wb") as f:
                chunk = b"x" * (1 << 20)
                while written < (1 << 30):
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
            res[d] = ["no limit", written]
        except OSError as e:
            res[d] = [type(e).__name__, written]
    try:
        open(os.path.join(os.getcwd(), "handler.py"), "a").write("# owned")
        res["code"] = "writable"
    except OSError as e:
        res["code"] = type(e).__name__
    return res
''', ephemeral_storage=48)  # (the default, 512 MB, is more than the function's memory: an OOM kill, not ENOSPC)
    for d in ("/tmp", "/dev/shm"):
        kind, written = out[d]
        assert kind == "OSError" and written <= 48 << 20, out
    assert out["code"] in ("OSError", "PermissionError"), out
    assert "polyfn-sec" not in json.dumps(out["before"])  # the host's /tmp is not visible
    healthy(node)


def test_privileged_syscalls_are_denied(node: Server) -> None:
    require(node, "seccomp")
    out = attack(node, "syscaller", '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    rc = getattr(libc, name)(*args)
    return [rc, ctypes.get_errno()]
def handler(event, context):
    res = {
        "mount": call("mount", b"none", b"/tmp", b"tmpfs", 0, None),
        "umount2": call("umount2", b"/tmp", 2),
        "ptrace": call("ptrace", 16, 1, None, None),  # PTRACE_ATTACH to pid 1
        "unshare": call("unshare", 0x10000000),  # CLONE_NEWUSER
        "keyctl": call("syscall", 250, 0, 0, 0, 0),
        "bpf": call("syscall", 321, 0, 0, 0),
        "setuid0": call("setuid", 0),
        "uid": os.getuid(),
    }
    return res
''')
    for name in ("mount", "umount2", "ptrace", "unshare", "keyctl", "bpf", "setuid0"):
        rc, err = out[name]
        assert rc == -1 and err in (1, 38), (name, out)  # EPERM (ENOSYS on kernels without the call)
    assert out["uid"] != 0
    healthy(node)


REFUSED = '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if {at_import}:
    libc.syscall({nr}, 0, 0, 0, 0, 0)  # kcmp: not on the Python runtime's allow-list
def handler(event, context):
    libc.syscall({nr}, 0, 0, 0, 0, 0)
    return "not refused"
'''


@pytest.mark.parametrize("at_import", [False, True], ids=["in-handler", "at-import"])
def test_a_call_outside_the_allow_list_names_itself(node: Server, at_import: bool) -> None:
    """A call outside the runtime's list ends the instance by SIGSYS, and the caller is told which call."""
    require(node, "seccomp")
    name = f"refused-{'import' if at_import else 'handler'}"
    nr = seccomp.library().seccomp_syscall_resolve_name(b"kcmp")
    node.deploy(name, {"handler.py": REFUSED.format(at_import=at_import, nr=nr)})
    r = node.api.post(f"/v1/functions/{name}/invoke", json={})
    assert r.status_code in (500, 502), r.text
    assert "SIGSYS" in r.text and f"`kcmp` ({nr})" in r.text, r.text
    if not at_import:
        assert error_code(r) == "function_crashed", r.text
    healthy(node)


REFUSED_HTTP = '''
import ctypes, os
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ctypes.CDLL(None).syscall({nr}, 0, 0, 0, 0, 0)  # kcmp: not on the http runtime's allow-list
        self.send_response(200)
        self.end_headers()

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def test_an_http_program_killed_by_the_filter_is_told_which_call(node: Server) -> None:
    """Any program of the `http` runtime: the filter kills it (it cannot catch the signal), the kernel
    logs the call with the function's uid, and the server names the call from that record."""
    require(node, "seccomp")
    require(node, "per-function uid")
    if needs.kernel_lacks("kmsg"):
        needs.missing(f"the kernel log cannot be read here: {needs.kernel_lacks('kmsg')}")
    nr = seccomp.library().seccomp_syscall_resolve_name(b"kcmp")
    node.deploy("refused-http", {"server.py": REFUSED_HTTP.format(nr=nr)}, runtime="http",
                handler="python3 server.py")
    r = node.http.get("/fn/refused-http")
    assert r.status_code == 502 and error_code(r) == "function_crashed", r.text
    assert "killed by SIGSYS" in r.text and f"`kcmp` ({nr})" in r.text, r.text
    healthy(node)


NET = '''
import socket
def handler(event, context):
    res = {}
    for host, port in (("127.0.0.1", event["port"]), ("10.255.255.1", 80), ("1.1.1.1", 53)):
        try:
            socket.create_connection((host, port), timeout=2).close()
            res[host] = "connected"
        except OSError as e:
            res[host] = type(e).__name__
    return res
'''


def test_network_none_has_only_loopback(node: Server) -> None:
    require(node, "net ns")
    allowed = attack(node, "net-all", NET, {"port": node.port})
    assert allowed["127.0.0.1"] == "connected"  # control: with the default network the node's API is relayed
    out = attack(node, "net-none", NET, {"port": node.port}, network="none")
    assert all(v != "connected" for v in out.values()), out
    healthy(node)


POLYFN_NET = '''
import os, socket
import boto3
def handler(event, context):
    res = {"env": {k: os.environ.get(k, "") for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_LAMBDA")}}
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=event["bucket"])
    s3.put_object(Bucket=event["bucket"], Key="k.txt", Body=b"through the relay")
    res["s3"] = s3.get_object(Bucket=event["bucket"], Key="k.txt")["Body"].read().decode()
    for host, port in [("127.0.0.1", p) for p in event["local"]] + [("10.255.255.1", 80), ("1.1.1.1", 53)]:
        try:
            socket.create_connection((host, port), timeout=2).close()
            res[f"{host}:{port}"] = "connected"
        except OSError as e:
            res[f"{host}:{port}"] = type(e).__name__
    return res
'''


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_network_polyfn_reaches_only_polyfn(node: Server) -> None:
    """`--network polyfn`: boto3 works against the node's S3 store and Lambda API; PostgreSQL, Redis
    (whether or not they run here) and external addresses are unreachable."""
    require(node, "net ns")
    needs.module("boto3")
    local = [5432, 6379]
    out = attack(node, "net-polyfn", POLYFN_NET, {"local": local, "bucket": "relayed"}, network="polyfn")
    assert out["s3"] == "through the relay", out
    assert out["env"]["AWS_ENDPOINT_URL_S3"].startswith("http://127.0.0.1:"), out
    for key, value in out.items():
        if key not in ("env", "s3"):
            assert value != "connected", out
    # control: with `network: host` (explicit) the same code reaches the local services that run here
    out_all = attack(node, "net-all-s3", POLYFN_NET, {"local": local, "bucket": "direct"}, network="host")
    assert out_all["s3"] == "through the relay"
    for port in local:
        if _listening(port):  # the service runs here: `all` reaches it, `polyfn` did not
            assert out_all[f"127.0.0.1:{port}"] == "connected", out_all
    healthy(node)


def test_network_polyfn_relays_the_api(node: Server) -> None:
    """The instance reaches the node's own HTTP port (gateway, /v1, Lambda API) through the relay."""
    require(node, "net ns")
    out = attack(node, "net-polyfn-api", '''
import os, urllib.request
def handler(event, context):
    url = os.environ["AWS_ENDPOINT_URL_LAMBDA"] + "/fn/bystander"
    return {"body": urllib.request.urlopen(url, timeout=5).read().decode()}
''', network="polyfn")
    assert out == {"body": "still here"}
    healthy(node)


def test_server_environment_does_not_leak(node: Server) -> None:
    out = attack(node, "envdump", "import os\ndef handler(e, c):\n    return dict(os.environ)\n")
    assert CANARY not in json.dumps(out)
    assert out["POLYFN_FUNCTION_NAME"] == "envdump"
    healthy(node)


@pytest.mark.parametrize("garbage", ["oversized", "undecodable", "forged_id"])
def test_hostile_frames_kill_only_the_sender(node: Server, garbage: str) -> None:
    """The instance writes garbage to its own connection: it is killed, the caller gets a clear error."""
    node.deploy(f"liar-{garbage.replace('_', '-')}", {"handler.py": '''
import os, stat, struct
import msgspec  # the runtime's own codec (polyfn.protocol cannot be imported from a function)

def encode_result(rid, body):  # a Result frame as polyfn.protocol writes it: tag, then fields in order
    raw = msgspec.msgpack.encode(["result", rid, 200, [], body, None, [], 0.0])
    return struct.pack(">I", len(raw)) + raw

def _sock():
    for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass

def handler(event, context):
    fd = _sock()
    kind = "KIND"
    if kind == "oversized":
        os.write(fd, struct.pack(">I", 0xFFFFFFF0) + b"x" * 64)
    elif kind == "undecodable":
        os.write(fd, struct.pack(">I", 5) + b"\\xc1\\xc1\\xc1\\xc1\\xc1")
    else:
        os.write(fd, encode_result(99999, b"forged"))
    import time
    time.sleep(10)
    return "not reached"
'''.replace("KIND", garbage)})
    r = node.http.get(f"/fn/liar-{garbage.replace('_', '-')}")
    assert r.status_code == 502 and error_code(r) == "function_crashed", r.text
    assert "protocol violation" in r.json()["error"]["message"], r.text
    healthy(node)


def test_log_flood_is_bounded(node: Server) -> None:
    node.deploy("flood", {"handler.py": '''
import os, sys
def handler(event, context):
    for i in range(200000):
        print("spam", i)
    os.write(1, b"raw stdout " * 100000)
    os.write(2, b"raw stderr " * 100000)
    return "done"
'''})
    r = node.http.get("/fn/flood")
    assert r.status_code == 200 and r.text == "done"
    act = node.activation(r.headers["x-polyfn-activation-id"])
    assert len(act["logs"]) <= 1001 and "dropped" in act["logs"][-1][-1]
    zlog = node.data_dir / "run" / "zygote-python.log"
    assert not zlog.exists() or zlog.stat().st_size < 1 << 20, "raw writes must not reach the node's files"
    healthy(node)


# --- the same attacks from a Node.js function (exec'd runtime: polyfn.sandbox.spawn, agent mode) ----------

NODE_ATTACK = r"""
const fs = require('fs');
const net = require('net');
function tryRead(p) {
  try { return 'READ ' + fs.readFileSync(p).toString('latin1').slice(0, 200); } catch (e) { return e.code || String(e); }
}
function tryList(d) {
  try { return fs.readdirSync(d).sort(); } catch (e) { return e.code || String(e); }
}
function tryKill(pid) {
  try { process.kill(pid, 'SIGKILL'); return 'sent'; } catch (e) { return e.code || String(e); }
}
function tryConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 2000 });
    s.on('connect', () => { s.destroy(); resolve('connected'); });
    s.on('timeout', () => { s.destroy(); resolve('timeout'); });
    s.on('error', (e) => resolve(e.code || String(e)));
  });
}
function tryWrite(p) {
  try { fs.writeFileSync(p, 'x'); return 'written'; } catch (e) { return e.code || String(e); }
}
exports.handler = async (event) => {
  const res = { uid: process.getuid(), gid: process.getgid() };
  res.read = Object.fromEntries(event.paths.map((p) => [p, tryRead(p)]));
  res.list = Object.fromEntries(event.dirs.map((d) => [d, tryList(d)]));
  res.pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).sort((a, b) => a - b);
  res.kill = Object.fromEntries(event.kill.map((p) => [String(p), tryKill(p)]));
  res.write = Object.fromEntries(event.writes.map((p) => [p, tryWrite(p)]));
  res.net = {};
  for (const [host, port] of event.connect) res.net[`${host}:${port}`] = await tryConnect(host, port);
  return res;
};
"""

NODE_SYSCALLS = r"""
// Privileged system calls from Node: no binding exposes mount/ptrace, so go through a child that
// inherits the sandbox: the uid cannot become root again and seccomp is inherited across exec.
const { spawnSync } = require('child_process');
exports.handler = async () => {
  const out = {};
  const py = spawnSync('python3', ['-c', `
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    rc = getattr(libc, name)(*args)
    return [rc, ctypes.get_errno()]
print(repr({
  "mount": call("mount", b"none", b"/tmp", b"tmpfs", 0, None),
  "ptrace": call("ptrace", 16, 1, None, None),
  "unshare": call("unshare", 0x10000000),
  "setuid0": call("setuid", 0),
  "nnp": open("/proc/self/status").read().split("NoNewPrivs:")[1].split()[0],
  "seccomp": open("/proc/self/status").read().split("Seccomp:")[1].split()[0],
}))`], { encoding: 'utf8' });
  out.python = py.stdout.trim() || py.stderr.trim() || String(py.error);
  try { process.setuid(0); out.setuid = 'became root'; } catch (e) { out.setuid = e.code || String(e); }
  return out;
};
"""


def node_attack(s: Server, name: str, code: str, payload: dict, **spec: object) -> dict:
    s.deploy(name, {"index.js": code}, runtime="node", handler="index.handler", **spec)
    r = s.api.post(f"/v1/functions/{name}/invoke", json=payload)
    assert r.status_code == 200, r.text
    return r.json()


def test_node_sandbox(node: Server) -> None:
    """A Node function cannot read the admin key or another function's code, see or signal other
    processes, write outside /tmp, or reach the network under `network: none`."""
    require(node, "mount ns")
    require(node, "pid ns")
    require(node, "net ns")
    node.deploy("victim", {"handler.py": "SECRET = 'victim-secret-4242'\ndef handler(e, c):\n    return 1\n"})
    code = node.data_dir / "code" / "victim"
    victim_files = [str(p) for p in code.rglob("handler.py")]
    assert victim_files
    payload = {
        "paths": [str(node.data_dir / "admin.key"), *victim_files, str(node.data_dir / "polyfn.db"), "/etc/shadow"],
        "dirs": [str(node.data_dir), str(code), "/root"],
        "kill": [node.proc.pid, _zygote_pid(node), 1],
        "writes": ["/tmp/ok.txt", str(node.data_dir / "planted.txt"), "/etc/planted.txt"],
        "connect": [["127.0.0.1", node.port], ["10.255.255.1", 80], ["1.1.1.1", 53]],
    }
    out = node_attack(node, "node-none", NODE_ATTACK, payload, network="none")
    text = json.dumps(out)
    assert node.key not in text and "victim-secret-4242" not in text and "READ" not in text, out
    assert out["uid"] != 0 and out["gid"] != 0, out
    assert set(out["pids"]) <= {1, 2, 3}, f"other processes are visible: {out['pids']}"
    assert out["kill"][str(node.proc.pid)] == "ESRCH", out["kill"]
    assert out["kill"]["1"] != "sent", out["kill"]
    assert out["write"]["/tmp/ok.txt"] == "written", out["write"]
    assert all(v != "written" for k, v in out["write"].items() if k != "/tmp/ok.txt"), out["write"]
    assert not (node.data_dir / "planted.txt").exists()
    assert all(v != "connected" for v in out["net"].values()), out["net"]
    # control: the same function with the default network reaches the node
    out = node_attack(node, "node-all", NODE_ATTACK, {**payload, "connect": [["127.0.0.1", node.port]]})
    assert out["net"][f"127.0.0.1:{node.port}"] == "connected", out["net"]
    assert "READ" not in json.dumps(out["read"])
    healthy(node)
    r = node.api.post("/v1/functions/node-all/invoke", json={**payload, "kill": [], "connect": []})
    assert r.status_code == 200, r.text  # the attacking instance itself is still serving


def test_node_privileged_syscalls_are_denied(node: Server) -> None:
    require(node, "seccomp")
    out = node_attack(node, "node-syscalls", NODE_SYSCALLS, {})
    assert out["setuid"] == "EPERM", out
    res = eval(out["python"], {})  # a dict literal printed by the child (repr of ints and strings)
    for name in ("mount", "ptrace", "unshare", "setuid0"):
        rc, err = res[name]
        assert rc == -1 and err in (1, 38), (name, res)
    assert res["nnp"] == "1" and res["seccomp"] == "2", res
    healthy(node)


def test_node_network_polyfn(node: Server) -> None:
    require(node, "net ns")
    code = r"""
const net = require('net');
const http = require('http');
function get(url) {
  return new Promise((resolve) => {
    http.get(url, (r) => { let b = ''; r.on('data', (c) => { b += c; }); r.on('end', () => resolve(b)); })
      .on('error', (e) => resolve(e.code || String(e)));
  });
}
function tryConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 2000 });
    s.on('connect', () => { s.destroy(); resolve('connected'); });
    s.on('timeout', () => { s.destroy(); resolve('timeout'); });
    s.on('error', (e) => resolve(e.code || String(e)));
  });
}
exports.handler = async (event) => ({
  api: await get(process.env.POLYFN_API_URL + '/fn/bystander'),
  s3: await get(process.env.AWS_ENDPOINT_URL_S3 + '/'),
  pg: await tryConnect('127.0.0.1', 5432),
  redis: await tryConnect('127.0.0.1', 6379),
  out: await tryConnect('1.1.1.1', 53),
});
"""
    out = node_attack(node, "node-polyfn", code, {}, network="polyfn")
    assert out["api"] == "still here", out
    assert "ListAllMyBucketsResult" in out["s3"] or "AccessDenied" in out["s3"] or "<Error>" in out["s3"], out
    assert all(out[k] != "connected" for k in ("pg", "redis", "out")), out
    healthy(node)


RELAYED = '''
import os, time, urllib.request
def handler(event, context):
    if (event or {}).get("sleep"):
        time.sleep(float(event["sleep"]))
    url = os.environ["AWS_ENDPOINT_URL_LAMBDA"] + "/fn/bystander"
    return {"body": urllib.request.urlopen(url, timeout=5).read().decode()}
'''


def test_network_polyfn_forks_of_a_function_zygote_share_its_relay(node: Server) -> None:
    """A function zygote applies the sandbox once (its namespace and relay are per function); instances
    forked from it reach polyfn through that relay, and still nothing else."""
    from ..e2e.conftest import wait_until
    from ..e2e.test_function_zygote import scale_out, zygote

    require(node, "net ns")
    node.deploy("relay-fz", {"handler.py": RELAYED}, network="polyfn", max_instances=4)
    r = node.api.post("/v1/functions/relay-fz/invoke", json={})
    assert r.status_code == 200 and r.json() == {"body": "still here"}, r.text
    if not wait_until(lambda: zygote(node, "relay-fz").get("state") == "ready", 30):
        pytest.fail(f"no function zygote was built: {zygote(node, 'relay-fz')}")
    out, act = scale_out(node, "relay-fz")
    assert "zygote: function" in act["init_info"], act["init_info"]
    assert out == {"body": "still here"}
    healthy(node)


def test_node_cannot_write_into_the_shared_runtime_log(node: Server) -> None:
    """fd 1 and 2 of a Node instance are not the node-wide runtime log file (which every Node instance
    shares): raw writes to them go nowhere, while console output still reaches the activation."""
    require(node, "mount ns")
    code = """
const fs = require('fs');
exports.handler = async () => {
  fs.writeSync(2, 'RAW-STDERR-MARKER\\n');
  fs.writeSync(1, 'RAW-STDOUT-MARKER\\n');
  console.log('CAPTURED-MARKER');
  return 'ok';
};
"""
    node.deploy("node-rawfd", {"index.js": code}, runtime="node", handler="index.handler")
    r = node.api.post("/v1/functions/node-rawfd/invoke", json={})
    assert r.status_code == 200 and r.json() == "ok", r.text
    act = node.activation(r.headers["x-polyfn-activation-id"])
    assert "CAPTURED-MARKER" in json.dumps(act["logs"]), act["logs"]
    shared = (node.data_dir / "run" / "node-instances.log")
    text = shared.read_text() if shared.exists() else ""
    assert "RAW-STDERR-MARKER" not in text and "RAW-STDOUT-MARKER" not in text
    healthy(node)


def test_no_descriptor_of_the_hosts_files_reaches_user_code(node: Server) -> None:
    """A pre-forked blank enters its root before its function is known: the spawn brings detached copies of
    the function's paths (open_tree) and the blank holds the relay's socket by an O_PATH descriptor. All are
    closed before any user code: the function finds no directory, mount tree or relay socket among its fds."""
    node.deploy("fdlist", {"handler.py": '''
import os, stat
def handler(event, context):
    out = {}
    for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
        try:
            mode = os.fstat(fd).st_mode
            out[fd] = [os.readlink(f"/proc/self/fd/{fd}"), stat.S_ISDIR(mode), stat.S_ISSOCK(mode)]
        except OSError as e:
            out[fd] = [type(e).__name__, False, False]
    return out
'''})
    r = node.http.get("/fn/fdlist")
    assert r.status_code == 200, r.text
    fds = r.json()
    # (the listing's own directory descriptor is closed by the time fstat runs: FileNotFoundError). No cgroup
    # directory either: through one, `..` walked the host's cgroup tree (every instance's cgroups)
    assert not [v for v in fds.values() if v[1]], fds
    assert not [v for v in fds.values() if v[0].startswith("/sys/fs/cgroup")], fds
    assert not [v for v in fds.values() if "netrelay" in v[0] or "/code/" in v[0] or "/deps/" in v[0]], fds
    assert sum(1 for v in fds.values() if v[2]) == 1, fds  # its own connection only
    healthy(node)
