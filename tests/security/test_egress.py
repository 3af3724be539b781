"""The default network (`egress`): the outside world, never the host (issue 27).

Attacks from Python and Node functions on a real `polyfn serve`: every loopback service port of this
machine is refused by default and reachable only with an allow-list entry; the node's own API and S3 stay
reachable through the relay; the host's own address, private and link-local ranges are refused.

Test traffic goes only to loopback or to addresses inside network namespaces this test creates itself:
`outside` (198.51.100.2, TEST-NET-2, standing in for the internet) and `lan` (10.213.0.2 and
169.254.169.254, standing in for a private network and a cloud metadata service), each joined to the host
by a veth pair the test makes — after the server started, so they are not "the node's own networks".
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.conftest import Server, error_code
from .conftest import isolation
from .test_attacks import attack, healthy, node_attack

SERVICES = {5432: "PostgreSQL", 6379: "Redis", 5672: "RabbitMQ", 4222: "NATS", 1883: "Mosquitto"}

CONNECT = '''
import socket
def handler(event, context):
    res = {}
    for host, port in event["targets"]:
        try:
            s = socket.create_connection((host, port), timeout=3)
            s.settimeout(3)
            try:
                res[f"{host}:{port}"] = "connected " + s.recv(64).decode(errors="replace")
            except OSError:
                res[f"{host}:{port}"] = "connected"
            s.close()
        except OSError as e:
            res[f"{host}:{port}"] = type(e).__name__
    return res
'''

NODE_CONNECT = r"""
const net = require('net');
function tryConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 3000 });
    s.on('connect', () => { s.destroy(); resolve('connected'); });
    s.on('timeout', () => { s.destroy(); resolve('timeout'); });
    s.on('error', (e) => resolve(e.code || String(e)));
  });
}
exports.handler = async (event) => {
  const res = {};
  for (const [host, port] of event.targets) res[`${host}:${port}`] = await tryConnect(host, port);
  const api = process.env.POLYFN_API_URL || '';
  res.api = api ? await fetch(api + '/fn/bystander').then((r) => r.text(), (e) => String(e)) : 'no POLYFN_API_URL';
  return res;
};
"""


def _require_egress(node: Server) -> None:
    """The egress layer needs root, namespaces and nft: skip with the reason, but never under CI=true."""
    line = isolation(node)
    if "egress (" in line.split("; off:")[0] and shutil.which("ip"):
        return
    why = f"the egress layer is unavailable here: {line}"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def _running(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


SERVER = '''
import socket, sys, threading
def serve(addr):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(sys.argv[1])))
    s.listen(16)
    while True:
        c, peer = s.accept()
        c.sendall(("from " + peer[0]).encode())
        c.close()
for a in sys.argv[2:]:
    threading.Thread(target=serve, args=(a,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''


class LabNet:
    """A network namespace of the test's own, joined to the host by a veth pair, running a TCP server
    that answers `from <peer address>` on `port` at each of `addresses`. Point-to-point /32 addresses and
    routes: a polyfn server starting meanwhile (the egress table is shared by every server on the host and
    refuses the node's own networks) sees only the host's /32 here, never the addresses behind it."""

    def __init__(self, tag: str, host: str, addresses: list[str], port: int):
        self.name = f"pft-{tag}-{uuid.uuid4().hex[:6]}"
        self.link = f"tv{uuid.uuid4().hex[:8]}"  # never pf…: polyfn's rules are for its instances only
        self.port = port
        _ip("netns", "add", self.name)
        _ip("link", "add", self.link, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        _ip("addr", "add", f"{host}/32", "dev", self.link)
        _ip("link", "set", self.link, "up")
        _ip("-n", self.name, "link", "set", "eth0", "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        for a in addresses:
            _ip("-n", self.name, "addr", "add", f"{a}/32", "dev", "eth0")
            _ip("route", "add", f"{a}/32", "dev", self.link)
        _ip("-n", self.name, "route", "add", f"{host}/32", "dev", "eth0")
        _ip("-n", self.name, "route", "add", "default", "via", host, "dev", "eth0")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, "-c", SERVER, str(port),
                                      *addresses], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture(scope="module")
def nets(node: Server) -> Iterator[dict[str, LabNet]]:
    _require_egress(node)
    made: dict[str, LabNet] = {}
    try:
        made["outside"] = LabNet("out", "198.51.100.1", ["198.51.100.2"], 7701)
        made["lan"] = LabNet("lan", "10.213.0.1", ["10.213.0.2", "10.213.0.3", "169.254.169.254"], 7702)
        yield made
    finally:
        for n in made.values():
            n.close()


def test_loopback_services_refused_by_default_and_allowed_by_entry(node: Server) -> None:
    """Python: each service on the node's loopback is refused under the default network; one allow-list
    entry per port opens exactly that port, and `--network host` (explicit) reaches them all."""
    _require_egress(node)
    running = [p for p in SERVICES if _running(p)]
    if not running:
        pytest.skip("none of PostgreSQL, Redis, RabbitMQ, NATS, Mosquitto listens on this machine's loopback")
    targets = [["127.0.0.1", p] for p in running]
    out = attack(node, "egress-default", CONNECT, {"targets": targets})
    for p in running:
        assert not out[f"127.0.0.1:{p}"].startswith("connected"), (SERVICES[p], out)
    first = running[0]
    node.deploy("egress-allowed", {"handler.py": CONNECT}, allow_net=[f"127.0.0.1:{first}"])
    r = node.api.post("/v1/functions/egress-allowed/invoke", json={"targets": targets})
    assert r.status_code == 200, r.text
    allowed = r.json()
    assert allowed[f"127.0.0.1:{first}"].startswith("connected"), allowed
    for p in running[1:]:
        assert not allowed[f"127.0.0.1:{p}"].startswith("connected"), (SERVICES[p], allowed)
    for p in running:  # every port opens with its own entry
        node.deploy(f"egress-allow-{p}", {"handler.py": CONNECT}, allow_net=[f"127.0.0.1:{p}"])
        r = node.api.post(f"/v1/functions/egress-allow-{p}/invoke", json={"targets": [["127.0.0.1", p]]})
        assert r.json()[f"127.0.0.1:{p}"].startswith("connected"), (SERVICES[p], r.text)
    host = attack(node, "egress-host", CONNECT, {"targets": targets}, network="host")
    assert all(host[f"127.0.0.1:{p}"].startswith("connected") for p in running), host
    described = " ".join(node.cli("describe", "egress-host", check=True).stdout.split())
    assert "warning: network host" in described and "loopback services" in described, described
    assert "warning" not in " ".join(node.cli("describe", "egress-default", check=True).stdout.split())
    healthy(node)


def test_node_function_loopback_refused_api_relayed(node: Server) -> None:
    """Node: the same refusal by default, the allow-list entry opens the port, the node's API answers."""
    _require_egress(node)
    running = [p for p in SERVICES if _running(p)]
    targets = [["127.0.0.1", p] for p in running]
    out = node_attack(node, "egress-node", NODE_CONNECT, {"targets": targets})
    assert out["api"] == "still here", out
    for p in running:
        assert out[f"127.0.0.1:{p}"] != "connected", (SERVICES[p], out)
    if running:
        node.deploy("egress-node-allowed", {"index.js": NODE_CONNECT}, runtime="node", handler="index.handler",
                    allow_net=[f"127.0.0.1:{running[0]}"])
        r = node.api.post("/v1/functions/egress-node-allowed/invoke", json={"targets": targets[:1]})
        assert r.json()[f"127.0.0.1:{running[0]}"] == "connected", r.text
    healthy(node)


S3_AND_API = '''
import os, urllib.request
import boto3
def handler(event, context):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="egress-relay")
    s3.put_object(Bucket="egress-relay", Key="k", Body=b"relayed")
    api = urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL_LAMBDA"] + "/fn/bystander", timeout=5).read()
    return {"s3": s3.get_object(Bucket="egress-relay", Key="k")["Body"].read().decode(), "api": api.decode()}
'''


def test_node_api_and_s3_reachable_by_default(node: Server) -> None:
    _require_egress(node)
    out = attack(node, "egress-s3", S3_AND_API)
    assert out == {"s3": "relayed", "api": "still here"}, out


def test_outside_reachable_host_private_and_link_local_refused(node: Server, nets: dict[str, LabNet]) -> None:
    """The way out works (NAT: the outside sees the node's address, not the instance's); the host's own
    addresses, a private network and the metadata address are refused even though the host reaches them."""
    outside, lan = nets["outside"], nets["lan"]
    listener = socket.socket()  # a service of the host on all its addresses
    listener.bind(("0.0.0.0", 0))
    listener.listen(4)
    host_port = listener.getsockname()[1]
    host_addrs = sorted({a for a in _host_addresses() if not a.startswith("127.")})
    try:
        targets = [["198.51.100.2", outside.port], ["10.213.0.2", lan.port], ["169.254.169.254", lan.port],
                   ["127.0.0.1", host_port], *[[a, host_port] for a in host_addrs]]
        assert all(_host_reaches(h, p) for h, p in targets), "the host itself must reach every target"
        out = attack(node, "egress-ranges", CONNECT, {"targets": targets})
        assert out[f"198.51.100.2:{outside.port}"] == "connected from 198.51.100.1", out  # masqueraded
        for key in (f"10.213.0.2:{lan.port}", f"169.254.169.254:{lan.port}", f"127.0.0.1:{host_port}",
                    *[f"{a}:{host_port}" for a in host_addrs]):
            assert not out[key].startswith("connected"), (key, out)
        # an allow-list entry opens the private service (relayed by the node)
        node.deploy("egress-lan", {"handler.py": CONNECT}, allow_net=[f"10.213.0.2:{lan.port}"])
        r = node.api.post("/v1/functions/egress-lan/invoke", json={"targets": targets[1:3]})
        res = r.json()
        assert res[f"10.213.0.2:{lan.port}"].startswith("connected from 10.213.0.1"), res
        assert not res[f"169.254.169.254:{lan.port}"].startswith("connected"), res
    finally:
        listener.close()
    healthy(node)


def test_allow_list_ranges_are_routed_to_exactly_what_they_name(node: Server, nets: dict[str, LabNet]) -> None:
    """`--allow-net CIDR[:PORTS]` (Python and Node): the range's addresses on its ports are routed (NAT, not
    relayed: every address of the range answers, none was listed); other ports, the metadata address, the
    host itself and its loopback services stay refused."""
    lan = nets["lan"]
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(4)
    host_port = listener.getsockname()[1]
    host_addrs = sorted({a for a in _host_addresses() if not a.startswith("127.")})
    in_range = [["10.213.0.2", lan.port], ["10.213.0.3", lan.port]]
    refused = [["169.254.169.254", lan.port], ["127.0.0.1", host_port], *[[a, host_port] for a in host_addrs],
               *[["127.0.0.1", p] for p in SERVICES if _running(p)]]
    try:
        for i, allow in enumerate((["10.213.0.0/24"], [f"10.213.0.0/24:{lan.port}"],
                                   [f"10.213.0.2/31:{lan.port - 1}-{lan.port}"],
                                   [f"10.213.0.0/24:{lan.port}", *[f"{a}/32:{host_port}" for a in host_addrs]])):
            name = f"egress-cidr-{i}"
            node.deploy(name, {"handler.py": CONNECT}, allow_net=allow)
            r = node.api.post(f"/v1/functions/{name}/invoke", json={"targets": in_range + refused})
            assert r.status_code == 200, r.text
            out = r.json()
            for h, p in in_range:
                assert out[f"{h}:{p}"] == "connected from 10.213.0.1", (allow, out)  # masqueraded, routed
            for h, p in refused:  # a range covering the host's own address still does not open the host
                assert not out[f"{h}:{p}"].startswith("connected"), (allow, h, p, out)
        # other ports of the range, and a range that does not hold the address, stay refused
        for allow in ([f"10.213.0.0/24:{lan.port + 1}-{lan.port + 9}"], ["10.213.1.0/24"], ["10.213.0.3/32"]):
            node.deploy("egress-cidr-miss", {"handler.py": CONNECT}, allow_net=allow)
            out = node.api.post("/v1/functions/egress-cidr-miss/invoke", json={"targets": in_range[:1]}).json()
            assert not out[f"10.213.0.2:{lan.port}"].startswith("connected"), (allow, out)
        # Node (pre-started blanks: the group is set when the blank is handed its function)
        node.deploy("egress-cidr-node", {"index.js": NODE_CONNECT}, runtime="node", handler="index.handler",
                    allow_net=[f"10.213.0.0/24:{lan.port}"])
        r = node.api.post("/v1/functions/egress-cidr-node/invoke", json={"targets": in_range + refused[:1]})
        out = r.json()
        assert out[f"10.213.0.2:{lan.port}"] == "connected" and out[f"10.213.0.3:{lan.port}"] == "connected", out
        assert out[f"169.254.169.254:{lan.port}"] != "connected", out
        assert out["api"] == "still here", out
    finally:
        listener.close()
    # the default network of a function without an entry still refuses the range
    out = attack(node, "egress-cidr-none", CONNECT, {"targets": in_range})
    assert not any(v.startswith("connected") for v in out.values()), out
    healthy(node)


def _host_reaches(host: str, port: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    return [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])
            if not str(link.get("ifname", "")).startswith(("pf", "tv"))]


def test_bad_allow_list_entries_are_refused(node: Server) -> None:
    for spec, code in (({"allow_net": ["5432"]}, "invalid_allow_net"),
                       ({"allow_net": ["127.0.0.1:99999"]}, "invalid_allow_net"),
                       ({"allow_net": ["127.0.0.1:5432"], "network": "host"}, "invalid_allow_net"),
                       ({"allow_net": ["10.1.2.5/24:5432"]}, "invalid_allow_net"),
                       ({"allow_net": ["10.1.2.0/24:0"]}, "invalid_allow_net"),
                       ({"allow_net": ["127.0.0.0/8"]}, "invalid_allow_net"),
                       ({"allow_net": ["169.254.0.0/16:80"]}, "invalid_allow_net"),
                       ({"allow_net": ["10.1.2.0/24:5432"], "network": "polyfn"}, "invalid_allow_net"),
                       ({"network": "internet"}, "invalid_spec")):
        r = node.api.post("/v1/functions", json={"name": "bad-net", "files": {"handler.py": "def handler(e, c): pass"},
                                                 **spec})
        assert r.status_code == 400 and error_code(r) == code, (spec, r.text)


NODE_S3 = r"""
const { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } = require('@aws-sdk/client-s3');
exports.handler = async () => {
  const s3 = new S3Client({ forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: 'node-sdk' }));
  await s3.send(new PutObjectCommand({ Bucket: 'node-sdk', Key: 'k', Body: 'provided sdk, relayed' }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'node-sdk', Key: 'k' }));
  return { body: await got.Body.transformToString(), endpoint: process.env.AWS_ENDPOINT_URL_S3 };
};
"""


def test_node_function_uses_the_provided_aws_sdk_through_the_relay(node: Server) -> None:
    """Issue 18: the AWS SDK v3 is provided to Node functions (one shared copy, `make node-sdk`); with the
    default network it reaches the node's S3 through the relay."""
    sdk = Path(__file__).resolve().parents[2] / "src/polyfn/runtimes/node/provided/aws-sdk/node_modules/@aws-sdk"
    if not (sdk / "client-s3").is_dir():
        why = "the provided AWS SDK v3 for Node is not installed (make node-sdk)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    _require_egress(node)
    out = node_attack(node, "node-sdk", NODE_S3, {})
    assert out["body"] == "provided sdk, relayed", out
    assert out["endpoint"].startswith("http://127.0.0.1:"), out


def test_a_node_functions_own_sdk_wins(node: Server) -> None:
    """The provided SDK comes after the function's own node_modules (Lambda's precedence)."""
    own = "module.exports = { S3Client: class { constructor() { this.own = 'own copy'; } } };\n"
    code = "const { S3Client } = require('@aws-sdk/client-s3');\nexports.handler = async () => new S3Client().own;\n"
    node.deploy("node-own-sdk", {"index.js": code, "node_modules/@aws-sdk/client-s3/index.js": own},
                runtime="node", handler="index.handler")
    r = node.api.post("/v1/functions/node-own-sdk/invoke", json={})
    assert r.status_code == 200 and r.json() == "own copy", r.text
