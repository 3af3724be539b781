"""Object store: boto3 PUT/GET throughput against polyfn's store and moto's server, and upload→trigger latency.

Both stores run on this machine in the same run with the same client: boto3's S3 client, one connection
at a time (sequential requests), objects of 4 KB and 8 MB. polyfn uses its default `local` backend;
moto (`moto[server]`) is the in-memory S3 emulator most Python projects test against. Then a storage
trigger on a function that does nothing: for each upload, the time from issuing the PUT to the function's
activation starting (and ending), read from the activation record.

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


def trigger_latency(srv: PolyfnServer, s3: Any, n: int) -> tuple[list[float], list[float]]:
    assert srv.api is not None
    srv.api.conn.close()  # idle through the throughput runs: the server closed it; reconnect
    srv.deploy("bench-noop", {"main.py": "def handler(event, context):\n    return 'ok'\n"}, handler="main.handler")
    s3.create_bucket(Bucket="bench-trig")
    srv.api.json("POST", "/v1/storage/triggers", {"function": "bench-noop", "bucket": "bench-trig"})
    start, end = [], []
    seen = 0
    for i in range(n + 1):
        t0 = time.time()
        s3.put_object(Bucket="bench-trig", Key=f"u{i}", Body=b"x" * 1024)
        while True:
            acts = srv.api.json("GET", "/v1/activations?function=bench-noop&limit=1000")["activations"]
            if len(acts) > seen:
                break
            time.sleep(0.002)
        seen = len(acts)
        act = max(acts, key=lambda a: a["start"])
        if i:  # the first one includes the cold start
            start.append((act["start"] - t0) * 1000)
            end.append((act["end"] - t0) * 1000)
    return start, end


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
            start, end = trigger_latency(srv, ours, trig_n)
            print()
            print(f"upload → trigger ({len(start)} samples, warm function; PUT issued → activation start / end)")
            print(table(["", "p50 ms", "p99 ms"], [
                ["activation start", fmt(percentile(start, 50)), fmt(percentile(start, 99))],
                ["activation end", fmt(percentile(end, 50)), fmt(percentile(end, 99))]]))
    finally:
        stop_process(moto)


if __name__ == "__main__":
    main()
