"""The Node.js runtime through a real server: launch without a zygote, timeouts, crashes with their exit
status, concurrency, typed init errors, detection errors, npm dependencies and wx-server-sdk callFunction."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .. import needs
from .conftest import Server, error_code, pid_alive, wait_until

pytestmark = pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                                reason="Node.js is not installed")


def test_callback_never_called_times_out_cleanly(server: Server) -> None:
    server.deploy("never-cb", {"index.js": "exports.handler = function (event, context, callback) { console.log('waiting'); };"},
                  timeout=3)
    r = server.http.post("/fn/never-cb", content=b"x")
    assert r.status_code == 504 and error_code(r) == "function_timeout"
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "timeout"
    # The overrunning instance was killed and replaced: the next call starts a fresh one and times out too.
    r2 = server.http.post("/fn/never-cb", content=b"x")
    assert r2.status_code == 504
    assert server.activation(r2.headers["x-polyfn-activation-id"])["instance"] != act["instance"]


def test_process_exit_is_reported_with_its_status(server: Server) -> None:
    server.deploy("node-exit", {"index.js": "exports.handler = async (e) => { if (e.code !== undefined) process.exit(e.code); "
                                            "process.kill(process.pid, 'SIGKILL'); };"}, flavor="aws")
    r = server.http.post("/v1/functions/node-exit/invoke", json={"code": 3},
                         headers={"authorization": f"Bearer {server.key}"})
    assert r.status_code == 502 and error_code(r) == "function_crashed"
    assert "exited with code 3" in r.json()["error"]["message"]
    r = server.http.post("/fn/node-exit", content=b"")
    assert r.status_code == 502 and "SIGKILL" in r.json()["error"]["message"]


def test_instance_info_pid_and_cleanup(server: Server) -> None:
    server.deploy("node-pid", {"index.js": "exports.handler = async () => ({ pid: Number(process.env.POLYFN_HOST_PID) });"})
    r = server.http.get("/fn/node-pid")
    pid = r.json()["pid"]
    assert pid_alive(pid)
    server.api.delete("/v1/functions/node-pid")
    assert wait_until(lambda: not pid_alive(pid), 10)


def test_concurrency_in_one_instance(server: Server) -> None:
    import concurrent.futures

    server.deploy("node-conc", {"index.js": """
let inflight = 0, peak = 0;
exports.handler = async () => { inflight++; peak = Math.max(peak, inflight);
  await new Promise((r) => setTimeout(r, 300)); inflight--; return { pid: process.pid, peak }; };
"""}, concurrency=4, max_instances=1)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: server.http.get("/fn/node-conc").json(), range(4)))
    assert len({x["pid"] for x in results}) == 1
    assert max(x["peak"] for x in results) > 1


def test_init_error_reaches_the_caller_typed(server: Server) -> None:
    server.deploy("node-broken", {"index.js": "const x = require('./nope');\nexports.handler = async () => 1;"})
    r = server.http.get("/fn/node-broken")
    assert r.status_code == 502 and error_code(r) == "function_init_failed"
    err = r.json()["error"]
    assert err["errorType"] == "Runtime.ImportModuleError" and "./nope" in err["message"]


def test_detection_errors_name_what_was_looked_for(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "node-unknown", "files": {"lib.js": "const a = 1;"}})
    assert r.status_code == 400 and error_code(r) == "handler_not_found"
    msg = r.json()["error"]["message"]
    assert "lib.js" in msg and "exports.handler" in msg and "--handler" in msg
    r = server.api.post("/v1/functions", json={"name": "node-nofile", "runtime": "node", "handler": "main.handler",
                                                "files": {"index.js": "exports.handler = async () => 1;"}})
    assert r.status_code == 400 and "main" in r.json()["error"]["message"]


def test_npm_dependencies_installed_at_deploy_and_cached(server: Server, tmp_path: Path) -> None:
    needs.tool("npm")
    # a local package inside the function's code (the build cannot see the host's files: deploy/isolate.py)
    pkg = json.dumps({"name": "app", "version": "1.0.0", "dependencies": {"greeter": "file:./greeter"}})
    files = {"index.js": "const greet = require('greeter');\nexports.handler = async (e) => greet(e.name);",
             "package.json": pkg,
             "greeter/package.json": json.dumps({"name": "greeter", "version": "1.0.0", "main": "index.js"}),
             "greeter/index.js": "module.exports = (n) => `hello ${n} from a dependency`;"}
    src = tmp_path / "app"
    for k, v in files.items():
        (src / k).parent.mkdir(parents=True, exist_ok=True)
        (src / k).write_text(v)
    r = server.cli("deploy", str(src), "--name", "node-deps", check=True)
    assert "npm install" in r.stdout + r.stderr
    r = server.cli("invoke", "node-deps", "--data", '{"name": "polyfn"}', check=True)
    assert json.loads(r.stdout) == "hello polyfn from a dependency"
    r = server.cli("deploy", str(src), "--name", "node-deps2", check=True)
    assert "cached npm install" in r.stdout + r.stderr


def test_wechat_call_function_through_polyfn(server: Server) -> None:
    server.deploy("wx-add", {"index.js": "exports.main = async (event) => ({ sum: event.a + event.b });"}, flavor="wechat",
                  handler="index.main")
    server.deploy("wx-caller", {"index.js": """
const cloud = require('wx-server-sdk');
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
exports.main = async (event, context) => {
  const res = await cloud.callFunction({ name: 'wx-add', data: { a: event.a, b: 2 } });
  let missing;
  try { await cloud.callFunction({ name: 'wx-does-not-exist', data: {} }); } catch (e) { missing = e.errMsg; }
  return { res, openid: cloud.getWXContext().OPENID, missing };
};
"""})
    # an identity header from the caller is not an identity: only a signed-in app user's token is (test_apps.py)
    r = server.http.post("/fn/wx-caller", json={"a": 40}, headers={"x-wx-openid": "user-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["res"]["result"] == {"sum": 42} and out["res"]["errMsg"] == "cloud.callFunction:ok"
    assert len(out["res"]["requestID"]) == 32 and out["openid"] == ""
    assert out["missing"].startswith("cloud.callFunction:fail 404")


def test_node_cold_start_is_reported(server: Server) -> None:
    server.deploy("node-cold", {"index.js": "exports.handler = async () => 'hi';"})
    r = server.http.get("/fn/node-cold")
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["cold"] is True and act["init_ms"] > 0
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    assert version.startswith("v") and int(version[1:].split(".")[0]) >= 20


def test_node_instances_get_a_clean_environment(server: Server) -> None:
    server.deploy("node-env", {"index.js": "exports.handler = async () => process.env;"}, env={"MINE": "yes"})
    env = server.http.get("/fn/node-env").json()
    assert env["MINE"] == "yes" and env["POLYFN_FUNCTION_NAME"] == "node-env"
    assert not any("KEY" in k and k.startswith("POLYFN") for k in env)
    assert "POLYFN_DATA_DIR" not in env and "POLYFN_LOG_LEVEL" not in env and "POLYFN_FD" not in env


def test_server_kill_leaves_no_node_or_http_orphans(fresh_server: Server) -> None:
    import signal

    s = fresh_server
    s.deploy("orphan-node", {"index.js": "exports.handler = async () => ({ pid: Number(process.env.POLYFN_HOST_PID) });"})
    s.deploy("orphan-http", {"server.py": "import os\nfrom http.server import HTTPServer, BaseHTTPRequestHandler\n"
                                          "class H(BaseHTTPRequestHandler):\n"
                                          "    def do_GET(self):\n"
                                          "        b = os.environ['POLYFN_HOST_PID'].encode(); self.send_response(200)\n"
                                          "        self.send_header('content-length', str(len(b))); self.end_headers(); self.wfile.write(b)\n"
                                          "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"})
    node_pid = s.http.get("/fn/orphan-node").json()["pid"]
    http_pid = int(s.http.get("/fn/orphan-http").text)
    assert pid_alive(node_pid) and pid_alive(http_pid)
    s.stop(signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(node_pid) and not pid_alive(http_pid), 10)


def _blank_node_pids(server_pid: int) -> set[int]:
    """Pre-started Node processes of this server, by the pid the server knows (its child that supervises
    the sandbox): those whose `node ... bootstrap.js` has no spec argument and no function yet."""
    parents: dict[int, int] = {}
    nodes = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parents[int(d)] = int(f.read().rsplit(") ", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
            with open(f"/proc/{d}/environ", "rb") as f:
                environ = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if argv and argv[-1].endswith(b"bootstrap.js") and b"POLYFN_GATE_FD=" in environ:
            nodes.append(int(d))
    out = set()
    for pid in nodes:
        if not os.path.exists(f"/proc/{pid}/task") or _uid(pid) != 0:  # switched to its function's uid: taken
            continue
        while pid in parents and parents[pid] not in (server_pid, 0, 1):
            pid = parents[pid]
        if parents.get(pid) == server_pid:
            out.add(pid)
    return out


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return -1


def test_pre_started_node_process_becomes_the_next_cold_instance(server: Server) -> None:
    server.deploy("blank-a", {"index.js": "exports.handler = async () => ({ pid: Number(process.env.POLYFN_HOST_PID) });"},
                  memory=192)
    before = _blank_node_pids(server.proc.pid)  # blanks of other sizes, from earlier tests on this server
    server.http.get("/fn/blank-a")  # first Node function of this size: launched fresh, blanks refilled after
    assert wait_until(lambda: len(_blank_node_pids(server.proc.pid) - before) >= 1, 15)
    blanks = _blank_node_pids(server.proc.pid) - before  # the 192 MB blank
    server.deploy("blank-b", {"index.js": "exports.handler = async () => ({ pid: Number(process.env.POLYFN_HOST_PID), "
                                          "env: process.env.B });"},
                  memory=192, env={"B": "yes"})
    out = server.http.get("/fn/blank-b").json()
    assert out["pid"] in blanks and out["env"] == "yes"
    assert wait_until(lambda: len(_blank_node_pids(server.proc.pid) - blanks) >= 1, 15)  # refilled


def test_node_functions_get_vendor_shaped_events(server: Server) -> None:
    """Trigger events reach Node.js code in its vendor's shape (built by the server for launched runtimes)."""
    server.deploy("node-s3", {"index.js": "exports.handler = async (event) => ({bucket: event.Records[0].s3.bucket.name, "
                                          "key: event.Records[0].s3.object.key, source: event.Records[0].eventSource});"},
                  flavor="aws")
    r = server.api.post("/v1/functions/node-s3/invoke", params={"event": "s3:put"},
                        json={"bucket": "images", "key": "uploads/cat.jpg"})
    assert r.status_code == 200, r.text
    assert r.json() == {"bucket": "images", "key": "uploads/cat.jpg", "source": "aws:s3"}
    server.deploy("node-ce", {"index.js": "exports.handler = async (event) => ({type: event.type});"}, flavor="kubeless",
                  handler="index.handler")
    r = server.api.post("/v1/functions/node-ce/invoke", params={"event": "s3:put"},
                        json={"bucket": "images", "key": "k"})
    assert r.status_code == 200, r.text  # a flavor without a shape for the type gets the CloudEvent itself


WX_FILES = """
const cloud = require('wx-server-sdk');
const http = require('http');
cloud.init({ env: 'wxt' });
const fetchText = (url) => new Promise((resolve, reject) => http.get(url, (res) => {
  const chunks = []; res.on('data', (c) => chunks.push(c)); res.on('end', () => resolve(Buffer.concat(chunks).toString()));
}).on('error', reject));
exports.main = async (event) => {
  const up = await cloud.uploadFile({ cloudPath: 'notes/a b.txt', fileContent: Buffer.from('hello files') });
  const down = await cloud.downloadFile({ fileID: up.fileID });
  const urls = await cloud.getTempFileURL({ fileList: [up.fileID, { fileID: 'not-a-file-id', maxAge: 60 }] });
  const fetched = await fetchText(urls.fileList[0].tempFileURL);
  const echoed = await cloud.callFunction({ name: 'wx-native-echo', data: { x: 1 } });
  const notProvided = [];
  for (const call of [() => cloud.openapi.subscribeMessage.send({}), () => cloud.getOpenData({ list: [] }),
                      () => cloud.cloudPay.unifiedOrder({}), () => cloud.someFutureApi()]) {
    try { await call(); } catch (e) { notProvided.push(e.message); }
  }
  cloud.updateConfig({ env: 'wxt' });
  const other = new cloud.Cloud({ env: 'wxt' });
  const viaCallback = await new Promise((resolve) => other.downloadFile({ fileID: up.fileID, success: resolve }));
  const deleted = await cloud.deleteFile({ fileList: [up.fileID] });
  let gone;
  try { await cloud.downloadFile({ fileID: up.fileID }); } catch (e) { gone = e.errMsg; }
  return { up, content: down.fileContent.toString(), urls: urls.fileList, fetched, echoed: echoed.result, notProvided,
           callback: viaCallback.fileContent.toString(), deleted: deleted.fileList, gone };
};
"""


def test_wx_server_sdk_files_calls_and_what_is_not_provided(server: Server) -> None:
    """What a function using `wx-server-sdk` calls works on polyfn (files in the object store, callFunction
    delivering `data` as the event of a function of another flavor) or fails saying polyfn does not provide it."""
    from .storage_helpers import s3_client

    s3_client(server).create_bucket(Bucket="app-wxt")
    server.deploy("wx-native-echo", {"index.js": "exports.handler = async (event) => ({ got: event });"})
    server.deploy("wx-files", {"index.js": WX_FILES, "package.json": json.dumps(
        {"name": "wx-files", "dependencies": {"wx-server-sdk": "~3.0.0"}})}, flavor="wechat", handler="index.main")
    r = server.http.post("/fn/wx-files", json={})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["up"] == {"fileID": "cloud://wxt.app-wxt/notes/a b.txt", "statusCode": 200, "errMsg": "uploadFile:ok"}
    assert out["content"] == "hello files" and out["callback"] == "hello files"
    good, bad = out["urls"]
    assert good["status"] == 0 and good["maxAge"] == 3600 and out["fetched"] == "hello files"  # a presigned GET
    assert bad["status"] == -1 and "cloud://" in bad["errMsg"]
    assert out["echoed"] == {"got": {"x": 1}}  # `data` is the event, for a function of any flavor
    assert [m.split(" is not provided")[0] for m in out["notProvided"]] == [
        "wx-server-sdk: openapi.subscribeMessage.send", "wx-server-sdk: getOpenData",
        "wx-server-sdk: cloudPay.unifiedOrder", "wx-server-sdk: someFutureApi"]
    assert out["deleted"] == [{"fileID": "cloud://wxt.app-wxt/notes/a b.txt", "status": 0, "errMsg": "ok"}]
    assert out["gone"].startswith("cloud.downloadFile:fail NoSuchKey")
