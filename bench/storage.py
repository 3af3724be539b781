"""Object store: boto3 PUT/GET throughput against polyfn's store and moto's server, and upload→trigger latency.

Both stores run on this machine in the same run with the same client: boto3's S3 client, one connection
at a time (sequential requests), objects of 4 KB and 8 MB. polyfn uses its default `local` backend;
moto (`moto[server]`) is the in-memory S3 emulator most Python projects test against. Then a storage
trigger on a function that does nothing: for each upload, the time from issuing the PUT to the function's
activation starting (and ending), read from the activation record. Each delivery goes through the durable
async queue (committed to queue.db before the PUT is answered), so the PUT's own round trip is also timed
against a PUT of the same size into a bucket without a trigger, interleaved in the same loop.

    .venv/bin/python bench/storage.py            # 300 × 4 KB, 12 × 8 MB, 100 trigger samples
    .venv/bin/python bench/storage.py --quick    # 60, 4, 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import boto3
from _common import PolyfnServer, fmt, free_port, percentile, print_header, stop_process, table, wait_http
from botocore.config import Config


def client(endpoint: str, akid: str, secret: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=akid, aws_secret_access_key=secret,
                        region_name="us-east-1", config=Config(retries={"max_attempts": 1},
                                                               max_pool_connections=1))


def throughput(s3: Any, bucket: str, size: int, n: int) -> dict[str, float]:
    body = os.urandom(size)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="warm", Body=body)  # connection and first-call costs out of the way
    s3.get_object(Bucket=bucket, Key="warm")["Body"].read()
    out = {}
    t0 = time.perf_counter()
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
    out["put"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n):
        got = s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read()
        assert len(got) == size
    out["get"] = n / (time.perf_counter() - t0)
    return out


def trigger_latency(srv: PolyfnServer, s3: Any, n: int) -> dict[str, list[float]]:
    assert srv.api is not None
    srv.api.conn.close()  # idle through the throughput runs: the server closed it; reconnect
    srv.deploy("bench-noop", {"main.py": "def handler(event, context):\n    return 'ok'\n"}, handler="main.handler")
    s3.create_bucket(Bucket="bench-trig")
    s3.create_bucket(Bucket="bench-plain")
    srv.api.json("POST", "/v1/storage/triggers", {"function": "bench-noop", "bucket": "bench-trig"})
    out: dict[str, list[float]] = {"start": [], "end": [], "put_trig": [], "put_plain": []}
    seen = 0
    for i in range(n + 1):
        t0 = time.perf_counter()
        s3.put_object(Bucket="bench-plain", Key=f"u{i}", Body=b"x" * 1024)
        plain = (time.perf_counter() - t0) * 1000
        t0 = time.time()
        p0 = time.perf_counter()
        s3.put_object(Bucket="bench-trig", Key=f"u{i}", Body=b"x" * 1024)
        trig = (time.perf_counter() - p0) * 1000
        while True:
            acts = srv.api.json("GET", "/v1/activations?function=bench-noop&limit=1000")["activations"]
            if len(acts) > seen:
                break
            time.sleep(0.002)
        seen = len(acts)
        act = max(acts, key=lambda a: a["start"])
        if i:  # the first one includes the cold start
            out["start"].append((act["start"] - t0) * 1000)
            out["end"].append((act["end"] - t0) * 1000)
            out["put_trig"].append(trig)
            out["put_plain"].append(plain)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    small_n, big_n, trig_n = (60, 4, 20) if args.quick else (300, 12, 100)
    print_header("object store: boto3 against polyfn (local backend) and moto[server]")
    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(moto_port, "/moto-api/", moto)
        with PolyfnServer(log_level="WARNING") as srv:
            assert srv.api is not None
            info = srv.api.json("GET", "/v1/storage")
            c = info["credentials"]
            ours = client(info["endpoint"], c["access_key_id"], c["secret_access_key"])
            peer = client(f"http://127.0.0.1:{moto_port}", "testing", "testing")
            rows = []
            for label, size, n in (("4 KB", 4096, small_n), ("8 MB", 8 * 1024 * 1024, big_n)):
                a = throughput(ours, f"bench-{size}", size, n)
                b = throughput(peer, f"bench-{size}", size, n)
                for op in ("put", "get"):
                    unit = (lambda r: f"{fmt(r, 0)} ops/s") if size < 1 << 20 else (
                        lambda r, s=size: f"{fmt(r * s / 2**20, 0)} MB/s")
                    rows.append([f"{op.upper()} {label}", unit(a[op]), unit(b[op]), fmt(a[op] / b[op]) + "×"])
            print(table(["operation", "polyfn", "moto[server]", "polyfn / moto"], rows))
            lat = trigger_latency(srv, ours, trig_n)
            print()
            print(f"upload → trigger ({len(lat['start'])} samples of 1 KB, warm function; PUT issued → activation "
                  "start / end; PUT answered, with and without a trigger)")

            def row(label: str, key: str) -> list[str]:
                return [label, fmt(percentile(lat[key], 50)), fmt(percentile(lat[key], 99))]

            print(table(["", "p50 ms", "p99 ms"], [
                row("activation start", "start"), row("activation end", "end"),
                row("PUT answered, bucket with a trigger (event queued durably)", "put_trig"),
                row("PUT answered, bucket without trigger", "put_plain")]))
            ratio = percentile(lat["put_trig"], 50) / percentile(lat["put_plain"], 50)
            print(f"\nPUT with a trigger / without, p50: {fmt(ratio)}×")
    finally:
        stop_process(moto)


if __name__ == "__main__":
    main()
