"""The DynamoDB face's server side alone: CPU per request of `DynamoDBApi.handle` (SigV4 verification, JSON,
access, the core, SQLite), with requests signed once by botocore and replayed, 32 at a time, in one process.
No HTTP server and no client: what is left is exactly the per-request work the node does after uvicorn
parsed a request, so a change to the hot path shows here without the load generator's noise (`bench/db.py`
measures the whole path against moto).

    .venv/bin/python bench/db_hotpath.py            # 3,000 requests per operation
    .venv/bin/python bench/db_hotpath.py --profile  # and write py-spy-free cProfile stats to /tmp
    .venv/bin/python bench/db_hotpath.py --http     # through the node's HTTP protocol too (below)
    .venv/bin/python bench/db_hotpath.py --http --at-once 1  # one request at a time (a starved node's load)
    .venv/bin/python bench/db_hotpath.py --http --at-once 1 --ops PutItem,UpdateItem+cond  # these rows only
    .venv/bin/python bench/db_hotpath.py --http --at-once 1 --boto3-headers  # the headers boto3 sends as well
    .venv/bin/python bench/db_hotpath.py --http --at-once 1 --gap-ms 1  # the loop idle between requests

`--http` adds, per operation, the same requests as raw HTTP/1.1 bytes fed to the node's protocol
(gateway/http.py, uvicorn's httptools protocol) on 32 in-memory transports, twice: answered straight from the
protocol (gateway/direct.py, as the node does) and through ASGI (the face as an ASGI app). What is left out is
only the socket: the kernel's reads and writes and uvloop's polling. `--at-once K`: K connections instead of 32,
so each turn of the loop has K requests (K=1: every write its own commit, as when boto3 clients on the same
cores leave the node one or two requests per wake-up). The requests carry the headers botocore signs (host,
x-amz-date, x-amz-target, content-type, authorization, content-length), as `bench/db.py --client wrk` sends them;
`--boto3-headers` adds the ones a boto3 client sends unsigned besides (`BOTO3_EXTRA`: accept-encoding, its
~230-byte user-agent, amz-sdk-invocation-id, amz-sdk-request), in the order it sends them. `--gap-ms G`: each
connection waits G ms after an answer before its next request, so the loop's thread blocks between requests and
each request finds the process woken from idle, its caches cold — what a node under `bench/db.py --client boto3`
sees (woken for one or two requests at a time); the wait's own CPU (a timer, the loop's turn, the wake-up) is
printed first, measured alone.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TABLE = "bench"


#: what a boto3 client (1.44, urllib3 2) sends besides the signed headers, read off the wire: (name, value, the
#: signed header it follows; None: first)
BOTO3_EXTRA = (
    (b"accept-encoding", b"identity", None),
    (b"user-agent", b"Boto3/1.44.18 md/Botocore#1.44.18 md/awscrt#0.38.1 ua/2.1 os/linux#6.18.44 md/arch#x86_64 "
                    b"lang/python#3.11.7 md/pyimpl#CPython m/e,E,P,b,Z,N cfg/retry-mode#standard Botocore/1.44.18",
     b"content-type"),
    (b"amz-sdk-invocation-id", b"686eb859-a4f4-458c-bbad-fb52d7271f30", b"authorization"),
    (b"amz-sdk-request", b"attempt=1; max=1", b"amz-sdk-invocation-id"),
)


def with_boto3_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with `BOTO3_EXTRA` inserted where boto3 puts them."""
    out = list(headers)
    for name, value, after in BOTO3_EXTRA:
        at = 0 if after is None else next(i for i, (k, _) in enumerate(out) if k == after) + 1
        out.insert(at, (name, value))
    return out


def signed(op: str, body: dict[str, Any], secret: str, boto3_headers: bool = False) -> tuple[dict[str, Any], bytes]:
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=data,
                     headers={"X-Amz-Target": f"DynamoDB_20120810.{op}",
                              "Content-Type": "application/x-amz-json-1.0"})
    SigV4Auth(Credentials("polyfn-admin", secret), "dynamodb", "us-east-1").add_auth(req)
    headers = [(k.lower().encode(), v.encode() if isinstance(v, str) else v) for k, v in req.headers.items()]
    headers.append((b"host", b"127.0.0.1:8080"))
    if boto3_headers:
        headers = with_boto3_headers(headers)
    scope = {"type": "http", "method": "POST", "path": "/", "raw_path": b"/", "query_string": b"", "headers": headers}
    return scope, data


REQUESTS = {
    "PutItem": ("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "p1"}, "sk": {"N": "1"}, "v": {"S": "x" * 100}}}),
    "GetItem": ("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "g1"}, "sk": {"N": "0"}}}),
    "Query100": ("Query", {"TableName": TABLE, "KeyConditionExpression": "pk = :p",
                           "ExpressionAttributeValues": {":p": {"S": "q"}}}),
    "UpdateItem+cond": ("UpdateItem", {"TableName": TABLE, "Key": {"pk": {"S": "g1"}, "sk": {"N": "0"}},
                                       "UpdateExpression": "SET n = n + :one",
                                       "ConditionExpression": "attribute_exists(pk)",
                                       "ExpressionAttributeValues": {":one": {"N": "1"}}}),
    "TransactWrite4": ("TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": f"t{j}"}, "sk": {"N": "2"}, "v": {"S": "z" * 50}}}}
        for j in range(4)]}),
}


class Wire:
    """An in-memory transport: what the protocol writes completes the waiting request."""

    def __init__(self) -> None:
        self.done: asyncio.Future[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def raw_request(scope: dict[str, Any], data: bytes) -> bytes:
    head = b"".join(k + b": " + v + b"\r\n" for k, v in scope["headers"] if k != b"content-length")
    return b"POST / HTTP/1.1\r\n" + head + b"content-length: %d\r\n\r\n" % len(data) + data


async def over_http(api: Any, scope: dict[str, Any], data: bytes, n: int, direct: bool, k: int = 32,
                    gap: float = 0.0, storage: Any = None) -> float:
    """µs of CPU per request fed as bytes to the node's protocol (`k` connections, one request each at a time);
    `storage`: the tables' storage, told the protocol's count of requests in flight as the node tells it
    (server.py: a write alone commits at once)."""
    import uvicorn
    from uvicorn.server import ServerState

    from polyfn.gateway.http import CoalescingHttpToolsProtocol
    from polyfn.gateway.limits import HttpLimits

    pick = (lambda method, headers: api) if direct else None
    cls = CoalescingHttpToolsProtocol.with_limits(HttpLimits(), direct=pick)
    config = uvicorn.Config(api, loop="none", http=cls, server_header=False, date_header=False, lifespan="off",
                            log_level="warning")
    config.load()
    state = ServerState()
    if storage is not None:
        storage.alone = lambda: len(state.tasks) <= 1
    raw = raw_request(scope, data)
    loop = asyncio.get_running_loop()

    async def conn(count: int) -> None:
        proto = cls(config=config, server_state=state, app_state={}, _loop=loop)
        wire = Wire()
        proto.connection_made(wire)  # type: ignore[arg-type]
        for _ in range(count):
            wire.done = loop.create_future()
            proto.data_received(raw)
            out = await wire.done
            if gap:  # the loop idle (its thread blocked in the poller) before the connection's next request
                await asyncio.sleep(gap)
            assert out.startswith(b"HTTP/1.1 200"), out[:200]
        proto.connection_lost(None)

    await asyncio.gather(*(conn(4) for _ in range(k)))  # (warm: imports, caches)
    cpu0 = time.process_time()
    await asyncio.gather(*(conn(n // k) for _ in range(k)))
    cpu = time.process_time() - cpu0
    if storage is not None:
        storage.alone = None
    return cpu / (n // k * k) * 1e6


async def idle_waits(n: int, k: int, gap: float) -> float:
    """µs of CPU per `asyncio.sleep(gap)` of `k` tasks, n in all: what `--gap-ms` adds to a request by itself."""

    async def waits(count: int) -> None:
        for _ in range(count):
            await asyncio.sleep(gap)

    await asyncio.gather(*(waits(4) for _ in range(k)))
    cpu0 = time.process_time()
    await asyncio.gather(*(waits(n // k) for _ in range(k)))
    return (time.process_time() - cpu0) / (n // k * k) * 1e6


async def main(n: int, profile: bool, http: bool = False, at_once: int = 32, ops: str = "",
               boto3_headers: bool = False, gap: float = 0.0) -> None:
    from polyfn.auth.keys import KeyRing
    from polyfn.auth.secrets import SecretBox
    from polyfn.db.access import Grants
    from polyfn.db.core import Database
    from polyfn.db.dynamodb_api import DynamoDBApi
    from polyfn.store import Store
    from polyfn.store.security import SecurityStore

    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp}/polyfn.db")
        keys = KeyRing(SecurityStore(store), SecretBox(Path(tmp) / "node.key"))
        secret = "bench-admin-secret"
        await keys.start(secret)
        db = await Database.open(str(Path(tmp) / "tables.db"))
        grants = Grants(db.storage)
        await grants.load()
        api = DynamoDBApi(db, keys, grants)
        await db.create_table("default", {
            "TableName": TABLE, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "N"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]})
        await db.put_item("default", {"TableName": TABLE, "Item": {"pk": {"S": "g1"}, "sk": {"N": "0"},
                                                                   "n": {"N": "0"}}})
        for i in range(100):
            await db.put_item("default", {"TableName": TABLE, "Item": {"pk": {"S": "q"}, "sk": {"N": str(i)},
                                                                       "v": {"S": "y" * 100}}})
        print(f"{'operation':18} {'µs CPU/request':>15} {'requests/s (one core)':>22}")
        if http and gap:
            print(f"(an idle wait of {gap * 1000:g} ms alone, no request: {await idle_waits(n, at_once, gap):.0f} µs "
                  "of CPU; the HTTP rows below include one per request)")
        for name, (op, body) in REQUESTS.items():
            if ops and name not in ops.split(","):
                continue
            scope, data = signed(op, body, secret, boto3_headers)
            status, out = await api.handle(scope, data)
            assert status == 200, out

            async def worker(count: int, scope: dict[str, Any] = scope, data: bytes = data) -> None:
                for _ in range(count):
                    status, out = await api.handle(scope, data)
                    assert status == 200, out

            prof = cProfile.Profile() if profile else None
            if prof:
                prof.enable()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker(n // 32) for _ in range(32)))
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - t0
            if prof:
                prof.disable()
                path = f"/tmp/db_hotpath_{name}.prof"
                prof.dump_stats(path)
                pstats.Stats(path).sort_stats("cumulative").print_stats(25)
            done = n // 32 * 32
            print(f"{name:18} {cpu / done * 1e6:15.0f} {done / wall:22.0f}")
            if http:
                for direct in (True, False):
                    us = await over_http(api, scope, data, n, direct, at_once, gap, db.storage)
                    print(f"  + HTTP, {'direct' if direct else 'ASGI':6} {us:7.0f}")
        await db.close()
        await keys.stop()
        await store.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--http", action="store_true", help="through the node's HTTP protocol too")
    ap.add_argument("--at-once", type=int, default=32, help="--http: connections, each one request at a time")
    ap.add_argument("--ops", default="", help=f"comma-separated, from {', '.join(REQUESTS)} (default: all)")
    ap.add_argument("--boto3-headers", action="store_true", help="add the unsigned headers a boto3 client sends")
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="--http: each connection idle this long after an answer (0: the next request at once)")
    a = ap.parse_args()
    assert all(op in REQUESTS for op in a.ops.split(",") if op), f"--ops: from {', '.join(REQUESTS)}"
    asyncio.run(main(a.n, a.profile, a.http, a.at_once, a.ops, a.boto3_headers, a.gap_ms / 1000))
