"""The Node bootstrap's own msgpack codec against Python's msgspec, both ways."""

from __future__ import annotations

import json
import subprocess

import msgspec

from polyfn.instances.launcher import NODE_DIR
from polyfn.protocol import InitError, Invoke, LogLine, Ready, Result, encode, from_instance_decoder

from .nodeharness import needs_node

pytestmark = needs_node

VALUES = [
    None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53) + 1,
    0.5, -1.25, 1e300, "", "a", "é中文🙂", "x" * 31, "x" * 32, "y" * 255, "y" * 256, "z" * 65536,
    [], [1, [2, [3]]], list(range(16)), list(range(70000)), {}, {"a": 1, "b": [True, None]},
    {str(i): i for i in range(20)}, {"k" * 40: {"nested": {"deep": "v"}}},
]

JS = r"""
const mp = require(process.argv[1]);
const input = require('fs').readFileSync(0);
const toJ = (v) => Buffer.isBuffer(v) ? {__bytes: v.toString('base64')} : Array.isArray(v) ? v.map(toJ)
  : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJ(x)])) : v;
const fromJ = (v) => v && typeof v === 'object' && !Array.isArray(v) && '__bytes' in v ? Buffer.from(v.__bytes, 'base64')
  : Array.isArray(v) ? v.map(fromJ) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromJ(x)])) : v;
const mode = process.argv[2];
if (mode === 'decode') process.stdout.write(JSON.stringify(toJ(mp.decode(input))));
else process.stdout.write(mp.encode(fromJ(JSON.parse(input.toString()))));
"""


def node(mode: str, data: bytes) -> bytes:
    r = subprocess.run(["node", "-e", JS, str(NODE_DIR / "msgpack.js"), mode], input=data, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def test_python_to_node_to_python() -> None:
    """Every value, alone and all in one array (one node process per direction, to keep the test fast)."""
    decoded = json.loads(node("decode", msgspec.msgpack.encode(VALUES)))
    for got, want in zip(decoded, VALUES, strict=True):
        assert got == want
    again = node("encode", json.dumps(VALUES).encode())
    assert msgspec.msgpack.decode(again) == VALUES
    # byte-for-byte: node's encoding of each value is the canonical (smallest) msgpack form msgspec makes
    for value in (0, 127, 128, -32, -33, 255, 65536, "x" * 31, "x" * 32, [], {}, list(range(16))):
        assert node("encode", json.dumps(value).encode()) == msgspec.msgpack.encode(value)


def test_bytes_both_ways() -> None:
    blob = bytes(range(256)) * 300
    for b in (b"", b"\x00", blob[:255], blob[:256], blob[:65536], blob):
        out = json.loads(node("decode", msgspec.msgpack.encode(b)))
        assert out == {"__bytes": __import__("base64").b64encode(b).decode()}
        assert msgspec.msgpack.decode(node("encode", json.dumps(out).encode())) == b


def test_protocol_frames_from_node_decode_with_the_server_schema() -> None:
    js = r"""
const mp = require(process.argv[1]);
const frames = [
  ['ready', 4242, 12.5, 'node'],
  ['ready', 4242, 12, 'integral float field'],
  ['init_error', {errorType: 'Runtime.HandlerNotFound', errorMessage: 'm', stackTrace: []}, [[1.5, 'stdout', 'l']]],
  ['result', 7, 201, [['content-type', 'text/plain']], Buffer.from([0, 255, 1]), null, [[1700000000.25, 'stderr', 'é']], 3],
  ['result', 8, 500, [], Buffer.alloc(0), {errorType: 'E', trace: ['at x'], n: 1.5}, [], 0.25],
];
const out = [];
for (const f of frames) { const b = mp.encode(f); const h = Buffer.alloc(4); h.writeUInt32BE(b.length); out.push(h, b); }
process.stdout.write(Buffer.concat(out));
"""
    r = subprocess.run(["node", "-e", js, str(NODE_DIR / "msgpack.js")], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    data, msgs = r.stdout, []
    while data:
        n = int.from_bytes(data[:4], "big")
        msgs.append(from_instance_decoder.decode(data[4 : 4 + n]))
        data = data[4 + n :]
    assert msgs[0] == Ready(4242, 12.5, "node")
    assert msgs[1].init_ms == 12.0
    assert isinstance(msgs[2], InitError) and msgs[2].error["errorType"] == "Runtime.HandlerNotFound"
    assert msgs[3] == Result(7, 201, [("content-type", "text/plain")], b"\x00\xff\x01", None,
                             [LogLine(1700000000.25, "stderr", "é")], 3.0)
    assert msgs[4].error == {"errorType": "E", "trace": ["at x"], "n": 1.5}


def test_invoke_frame_decodes_in_node() -> None:
    inv = Invoke(5, "act", "http", 1.5, "PUT", "/p", "a=1", [("x-h", "v")], b"\x00\x01", "application/x", "tr")
    frame = encode(inv)
    out = json.loads(node("decode", frame[4:]))
    assert out == ["invoke", 5, "act", "http", 1.5, "PUT", "/p", "a=1", [["x-h", "v"]], {"__bytes": "AAE="},
                   "application/x", "tr", None]
    inv.identity = {"uid": "u1", "claims": {"exp": 2}}
    out = json.loads(node("decode", encode(inv)[4:]))
    assert out[-1] == {"uid": "u1", "claims": {"exp": 2}}
