"""Document database: boto3 against polyfn's DynamoDB API and moto[server], 32 concurrent clients; the core
in-process; change-trigger lag.

Both servers run on this machine in the same run, with the same load: `--procs` load-generator processes ×
`--threads` threads (default 4 × 8 = 32 clients), each thread its own boto3 client and connection, each
operation for `--seconds`. boto3 is slow (its request building and signing cost more CPU than polyfn spends
answering), so the load generator's own CPU is measured and printed: on a small machine it, not the server,
is often the limit. Each row also gives the server's CPU per operation, which says what one node could do
with a faster client (`capacity/core` = operations per CPU-second of the server process and its children,
less what the idle server uses in the second before the run).

Operations: PutItem (new keys), GetItem (existing keys), Query returning 100 items, UpdateItem with a
ConditionExpression (`SET n = n + :one` if the item exists), TransactWriteItems of 4 Puts. Then the core
alone, in-process (no HTTP, 32 tasks): PutItem and GetItem on the embedded SQLite file. Then the change
trigger: PutItem → the function's activation start, p50/p99.

Then the same operations from a cheap client, so the node's capacity shows where boto3 is the limit: `wrk` (C, one
thread, `--connections` keep-alive connections) replaying requests signed beforehand with botocore's SigV4 (2,000
distinct bodies per operation, each valid for the 15 minutes SigV4 allows), against both servers; same columns.
Last, a verdict per target: ≥ 10× moto in server CPU per operation on every row (both clients), ≥ 5,000 PutItem/s
and ≥ 10,000 GetItem/s (the cheap client's throughput: a node's, not boto3's), trigger lag p50 ≤ 20 ms.

    .venv/bin/python bench/db.py               # 5 s per operation and server
    .venv/bin/python bench/db.py --quick       # 2 s
    .venv/bin/python bench/db.py --only polyfn # skip moto (profiling runs)
    .venv/bin/python bench/db.py --client wrk  # the cheap client only
    .venv/bin/python bench/db.py --pin split   # the server on one CPU, the load generator on the others

By default the scheduler places the servers and the load generator on any CPU, the same for both servers. `--pin
split` pins, for each row, every thread of the server's process tree to the first CPU and the generator (its
processes, or wrk) to the rest, the same for both servers. It is not the default: on this 2-CPU machine it raised
polyfn's CPU per operation under boto3 by 10-45 % and left moto's where it was (docs/performance.md, db11): alone on
its CPU the node is idle when each request comes and wakes once per request, where sharing the CPUs it finds two
or three waiting; and on a machine shared with other work it starves the generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from _common import (
    PolyfnServer,
    descendants,
    fmt,
    free_port,
    percentile,
    print_header,
    run_wrk,
    stop_process,
    table,
    tree_cpu_seconds,
    wait_http,
)
from botocore.config import Config

OPS = ("PutItem", "GetItem", "Query100", "UpdateItem+cond", "TransactWrite4")


def settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the server (its process tree) is idle: a server still working through the requests a previous
    load left queued (moto needs seconds for 32 outstanding Query100 or TransactWrite4) would otherwise count that
    work as its idle baseline, which is subtracted — the next row's CPU per operation came out near zero."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(pid)
        time.sleep(0.25)
        if tree_cpu_seconds(pid) - before < 0.05 * 0.25:
            return
PREFILL = 2000


def split_cpus(how: str) -> tuple[set[int], set[int]] | None:
    """(the server's CPUs, the load generator's) for `--pin`: "split" puts the server under test on the first CPU
    it may use and the load generator on the rest, the same for both servers; "off" leaves both to the scheduler."""
    cpus = sorted(os.sched_getaffinity(0))
    if how == "off" or len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def pin_tree(root: int, cpus: set[int]) -> None:
    """Every thread of `root`'s process tree onto `cpus` (threads and processes it starts later inherit them)."""
    for pid in descendants(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:  # gone meanwhile
                pass


def client(endpoint: str, akid: str, secret: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, aws_access_key_id=akid, aws_secret_access_key=secret,
                        region_name="us-east-1", config=Config(retries={"max_attempts": 0},
                                                               max_pool_connections=1))


def setup(c: Any, table_name: str) -> None:
    c.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "sk", "AttributeType": "N"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    reqs = [{"PutRequest": {"Item": {"pk": {"S": f"g{i}"}, "sk": {"N": "0"}, "n": {"N": "0"}, "v": {"S": "x" * 100}}}}
            for i in range(PREFILL)]
    reqs += [{"PutRequest": {"Item": {"pk": {"S": "q"}, "sk": {"N": str(i)}, "v": {"S": "y" * 100}}}} for i in range(100)]
    for i in range(0, len(reqs), 25):
        left = {table_name: reqs[i:i + 25]}
        while left:
            left = c.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}


def one_op(c: Any, op: str, table_name: str, rnd: random.Random, me: str, i: int) -> None:
    if op == "PutItem":
        c.put_item(TableName=table_name, Item={"pk": {"S": f"{me}-{i}"}, "sk": {"N": "1"}, "v": {"S": "x" * 100}})
    elif op == "GetItem":
        got = c.get_item(TableName=table_name, Key={"pk": {"S": f"g{rnd.randrange(PREFILL)}"}, "sk": {"N": "0"}})
        assert "Item" in got
    elif op == "Query100":
        got = c.query(TableName=table_name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "q"}})
        assert got["Count"] == 100
    elif op == "UpdateItem+cond":
        c.update_item(TableName=table_name, Key={"pk": {"S": f"g{rnd.randrange(PREFILL)}"}, "sk": {"N": "0"}},
                      UpdateExpression="SET n = n + :one", ConditionExpression="attribute_exists(pk)",
                      ExpressionAttributeValues={":one": {"N": "1"}})
    else:
        c.transact_write_items(TransactItems=[
            {"Put": {"TableName": table_name, "Item": {"pk": {"S": f"{me}-t{i}-{j}"}, "sk": {"N": "2"},
                                                       "v": {"S": "z" * 50}}}} for j in range(4)])


def worker(endpoint: str, akid: str, secret: str, table_name: str, op: str, threads: int, go: Any,
           seconds: float, name: str, out: Any, cpus: set[int] | None = None) -> None:
    """One load-generator process: `threads` clients, once `go` is set, for `seconds`; puts "ready" when its
    clients are warm, then (ops, errors, cpu). `cpus`: the CPUs it may run on (None: any)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    clients = [client(endpoint, akid, secret) for _ in range(threads)]
    counts = [0] * threads
    errors = [0] * threads
    for c in clients:  # connect and warm each client before the clock starts
        c.describe_table(TableName=table_name)
    out.put("ready")
    go.wait()
    start = time.time()

    def run(k: int) -> None:
        rnd = random.Random(k)
        me = f"{name}-{k}-{os.getpid()}"
        end = start + seconds
        i = 0
        while time.time() < end:
            try:
                one_op(clients[k], op, table_name, rnd, me, i)
                counts[k] += 1
            except Exception:
                errors[k] += 1
            i += 1

    cpu0 = time.process_time()
    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((sum(counts), sum(errors), time.process_time() - cpu0))


def load(endpoint: str, akid: str, secret: str, table_name: str, op: str, procs: int, threads: int,
         seconds: float, server_pid: int, pin: tuple[set[int], set[int]] | None = None) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    go = ctx.Event()
    ps = [ctx.Process(target=worker, args=(endpoint, akid, secret, table_name, op, threads, go, seconds,
                                           f"p{n}", q, pin[1] if pin else None)) for n in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:  # every process started and its clients warm
        assert q.get(timeout=300) == "ready"
    if pin:
        pin_tree(server_pid, pin[0])
    settle(server_pid)
    idle0 = tree_cpu_seconds(server_pid)  # the server's own background work (tickers, zygotes), subtracted
    time.sleep(1.0)
    idle = tree_cpu_seconds(server_pid) - idle0
    cpu0 = tree_cpu_seconds(server_pid)
    t0 = time.perf_counter()
    go.set()
    results = [q.get() for _ in ps]
    cpu1 = tree_cpu_seconds(server_pid)
    busy = max(0.0, cpu1 - cpu0 - idle * (time.perf_counter() - t0))
    for p in ps:
        p.join()
    if pin:
        pin_tree(server_pid, os.sched_getaffinity(0))
    ops = sum(r[0] for r in results)
    return {"ops_s": ops / seconds, "errors": sum(r[1] for r in results), "server_cpu": busy,
            "gen_cpu": sum(r[2] for r in results), "ops": ops, "seconds": seconds}


def raw_request(op: str, table_name: str, i: int) -> tuple[str, dict[str, Any]]:
    """The same operations as `one_op`, as (target, body) of the JSON protocol."""
    if op == "PutItem":
        return "PutItem", {"TableName": table_name, "Item": {"pk": {"S": f"w-{i}"}, "sk": {"N": "1"}, "v": {"S": "x" * 100}}}
    if op == "GetItem":
        return "GetItem", {"TableName": table_name, "Key": {"pk": {"S": f"g{i % PREFILL}"}, "sk": {"N": "0"}}}
    if op == "Query100":
        return "Query", {"TableName": table_name, "KeyConditionExpression": "pk = :p",
                         "ExpressionAttributeValues": {":p": {"S": "q"}}}
    if op == "UpdateItem+cond":
        return "UpdateItem", {"TableName": table_name, "Key": {"pk": {"S": f"g{i % PREFILL}"}, "sk": {"N": "0"}},
                              "UpdateExpression": "SET n = n + :one", "ConditionExpression": "attribute_exists(pk)",
                              "ExpressionAttributeValues": {":one": {"N": "1"}}}
    return "TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": table_name, "Item": {"pk": {"S": f"wt{i}-{j}"}, "sk": {"N": "2"}, "v": {"S": "z" * 50}}}}
        for j in range(4)]}


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n") + '"'


def presigned_script(endpoint: str, akid: str, secret: str, table_name: str, op: str, n: int, path: Path) -> None:
    """A wrk script replaying `n` requests of `op`, each signed now with botocore's SigV4 (raw HTTP/1.1)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = SigV4Auth(Credentials(akid, secret), "dynamodb", "us-east-1")
    host = endpoint.split("://", 1)[1].rstrip("/")
    reqs = []
    for i in range(n):
        target, body = raw_request(op, table_name, i)
        data = json.dumps(body, separators=(",", ":"))
        req = AWSRequest(method="POST", url=f"http://{host}/", data=data.encode(),
                         headers={"X-Amz-Target": f"DynamoDB_20120810.{target}",
                                  "Content-Type": "application/x-amz-json-1.0"})
        signer.add_auth(req)
        head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() not in ("host", "content-length"))
        reqs.append(f"POST / HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {len(data)}\r\n\r\n{data}")
    path.write_text("local reqs = {\n" + ",\n".join(_lua(r) for r in reqs) + "\n}\nlocal i = 0\n"
                    "request = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n")


def load_wrk(endpoint: str, akid: str, secret: str, table_name: str, op: str, connections: int, seconds: float,
             server_pid: int, pin: tuple[set[int], set[int]] | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / f"{op}.lua"
        presigned_script(endpoint, akid, secret, table_name, op, 2000, script)
        if pin:
            pin_tree(server_pid, pin[0])
        settle(server_pid)
        idle0 = tree_cpu_seconds(server_pid)
        time.sleep(1.0)
        idle = tree_cpu_seconds(server_pid) - idle0
        cpu0 = tree_cpu_seconds(server_pid)
        t0 = time.perf_counter()
        r = run_wrk(endpoint + "/", connections, max(1, round(seconds)), threads=1, script=str(script),
                    cpus=pin[1] if pin else None)
        took = time.perf_counter() - t0
        busy = max(0.0, tree_cpu_seconds(server_pid) - cpu0 - idle * took)
        if pin:
            pin_tree(server_pid, os.sched_getaffinity(0))
    return {"ops_s": r.rps, "errors": r.non_2xx + r.socket_errors, "server_cpu": busy, "gen_cpu": float("nan"),
            "ops": r.requests, "seconds": seconds, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms}


def core_inprocess(seconds: float) -> dict[str, float]:
    """PutItem and GetItem on the core itself (embedded SQLite), 32 concurrent tasks, no HTTP."""
    from polyfn.db.core import Database

    async def go() -> dict[str, float]:
        with tempfile.TemporaryDirectory() as tmp:
            db = await Database.open(str(Path(tmp) / "tables.db"))
            await db.create_table("default", {
                "TableName": "core", "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]})
            out = {}
            for op in ("PutItem", "GetItem"):
                end = time.perf_counter() + seconds
                count = 0

                async def task(k: int, op: str = op, end: float = end) -> None:
                    nonlocal count
                    i = 0
                    while time.perf_counter() < end:
                        if op == "PutItem":
                            await db.put_item("default", {"TableName": "core", "Item": {
                                "pk": {"S": f"{k}-{i}"}, "v": {"S": "x" * 100}}})
                        else:
                            await db.get_item("default", {"TableName": "core", "Key": {"pk": {"S": f"{k}-{i % 500}"}}})
                        i += 1
                        count += 1

                t0 = time.perf_counter()
                cpu0 = time.process_time()
                await asyncio.gather(*(task(k) for k in range(32)))
                out[op] = count / (time.perf_counter() - t0)
                out[op + "_cpu"] = (time.process_time() - cpu0) / count
            await db.close()
            return out

    return asyncio.run(go())


def trigger_lag(srv: PolyfnServer, c: Any, n: int) -> list[float]:
    assert srv.api is not None
    srv.api.conn.close()
    c.create_table(TableName="lag", BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    srv.deploy("bench-sink", {"main.py": "def handler(event, context):\n    return len(event['Records'])\n"},
               handler="main.handler", flavor="aws")
    subprocess.run([sys.executable, "-m", "polyfn", "trigger", "add", "bench-sink", "dynamodb", "--table", "lag"],
                   check=True, capture_output=True, env={**os.environ, "POLYFN_URL": srv.url(""),
                                                         "POLYFN_API_KEY": srv.key})
    time.sleep(1.0)
    srv.api.conn.close()  # idle past the node's keep-alive while the CLI ran: reconnect
    lags = []
    seen = 0
    for i in range(n + 1):
        t0 = time.time()
        c.put_item(TableName="lag", Item={"pk": {"S": f"k{i}"}})
        while True:
            acts = srv.api.json("GET", "/v1/activations?function=bench-sink&limit=1000")["activations"]
            if len(acts) > seen:
                break
            time.sleep(0.002)
        seen = len(acts)
        act = max(acts, key=lambda a: a["start"])
        if i:  # the first includes the cold start
            lags.append((act["start"] - t0) * 1000)
    return lags


def per_op(r: dict[str, float]) -> float:
    return r["server_cpu"] / max(r["ops"], 1)


def print_rows(title: str, ops: list[str], results: dict[str, dict[str, dict[str, float]]], gen: bool) -> None:
    rows = []
    for op in ops:
        a, b = results["polyfn"].get(op), results["moto"].get(op)
        row = [op]
        for r in (a, b):
            if r is None:
                row += ["-", "-", "-"]
                continue
            row += [f"{fmt(r['ops_s'], 0)}" + (f" ({int(r['errors'])} err)" if r["errors"] else ""),
                    f"{per_op(r) * 1e6:.0f} µs", fmt(1 / per_op(r) if per_op(r) else 0, 0)]
        row.append(fmt(per_op(b) / per_op(a)) + "×" if a and b and per_op(a) else "-")
        if gen:
            row.append(fmt(a["gen_cpu"] / a["seconds"]) if a else "-")
        rows.append(row)
    print(title)
    print(table(["operation", "polyfn ops/s", "server CPU/op", "capacity/core", "moto ops/s", "moto CPU/op",
                 "moto capacity/core", "moto CPU/op ÷ polyfn's"] + (["generator cores (polyfn run)"] if gen else []),
                rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32, help="the cheap client's keep-alive connections")
    ap.add_argument("--only", choices=("polyfn", "moto"))
    ap.add_argument("--client", choices=("boto3", "wrk", "both"), default="both")
    ap.add_argument("--ops", default=",".join(OPS), help="comma-separated; 'none' for the trigger lag alone")
    ap.add_argument("--pin", choices=("split", "off"), default="off",
                    help="split: the server under test on one CPU, the load generator on the others")
    args = ap.parse_args()
    pin = split_cpus(args.pin)
    seconds = 2.0 if args.quick else args.seconds
    ops = [] if args.ops == "none" else args.ops.split(",")
    clients = ["boto3", "wrk"] if args.client == "both" else [args.client]
    print_header(f"document database: boto3 ({args.procs} processes × {args.threads} clients) and wrk (presigned, "
                 f"{args.connections} connections) against polyfn and moto[server]")
    print(f"{os.cpu_count()} CPUs shared by the load generator, the servers and anything else running\n")
    moto = None
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {c: {"polyfn": {}, "moto": {}} for c in clients}
    verdicts: list[str] = []
    try:
        with PolyfnServer(log_level="WARNING") as srv:
            assert srv.proc is not None
            targets = []
            if args.only != "moto":
                targets.append(("polyfn", srv.url(""), "polyfn-admin", srv.key, srv.proc.pid))
            if args.only != "polyfn":
                port = free_port()
                moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                wait_http(port, "/moto-api/", moto)
                targets.append(("moto", f"http://127.0.0.1:{port}", "testing", "testing", moto.pid))
            for name, url, akid, secret, pid in targets:
                setup(client(url, akid, secret), "bench")
                for op in ops:
                    for c in clients:
                        if c == "boto3":
                            results[c][name][op] = load(url, akid, secret, "bench", op, args.procs, args.threads,
                                                        seconds, pid, pin)
                        else:
                            results[c][name][op] = load_wrk(url, akid, secret, "bench", op, args.connections, seconds,
                                                            pid, pin)
            for c in clients:
                print_rows(f"client: {'boto3, ' + str(args.procs * args.threads) + ' clients' if c == 'boto3' else 'wrk, presigned requests, ' + str(args.connections) + ' connections'}",
                           ops, results[c], gen=c == "boto3")
                print()
                if args.only is None and ops:
                    worst = min(ops, key=lambda op: per_op(results[c]["moto"][op]) / max(per_op(results[c]["polyfn"][op]), 1e-9))
                    ratio = per_op(results[c]["moto"][worst]) / max(per_op(results[c]["polyfn"][worst]), 1e-9)
                    verdicts.append(f"≥ 10× moto (server CPU per operation) on every row, {c}: lowest {ratio:.1f}× "
                                    f"({worst}): {'met' if ratio >= 10 else 'NOT met'}")
            print("capacity/core: operations per CPU-second of the server process (what one core of a node "
                  "serves when the client is not the limit)")
            if args.only != "moto" and ops:
                for op, target in (("PutItem", 5000), ("GetItem", 10000)):
                    got = [(c, results[c]["polyfn"][op]["ops_s"]) for c in clients if op in results[c]["polyfn"]]
                    if got:
                        best = max(got, key=lambda x: x[1])
                        verdicts.append(f"≥ {target:,} {op}/s embedded: {best[1]:,.0f}/s ({best[0]}): "
                                        f"{'met' if best[1] >= target else 'NOT met'}")
                core = core_inprocess(seconds)
                print(f"\nthe core in-process (embedded SQLite, 32 tasks, no HTTP): PutItem {fmt(core['PutItem'], 0)}/s "
                      f"({core['PutItem_cpu'] * 1e6:.0f} µs CPU each), GetItem {fmt(core['GetItem'], 0)}/s "
                      f"({core['GetItem_cpu'] * 1e6:.0f} µs CPU each)")
            if args.only != "moto":
                lags = trigger_lag(srv, client(srv.url(""), "polyfn-admin", srv.key), 20 if args.quick else 60)
                print(f"\nchange trigger (PutItem issued → activation start, {len(lags)} samples, warm function): "
                      f"p50 {fmt(percentile(lags, 50))} ms, p99 {fmt(percentile(lags, 99))} ms")
                verdicts.append(f"change-trigger lag p50 ≤ 20 ms ({percentile(lags, 50):.1f} ms): "
                                f"{'met' if percentile(lags, 50) <= 20 else 'NOT met'}")
    finally:
        if moto is not None:
            stop_process(moto)
    print()
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
