"""A/B of the Python instance's CPU per call between two source trees, the instance alone, same run.

In `bench/ab_hotpath.py` the instance shares the 2 cores with wrk, the server's loop and the activation writer,
so its own cost moves with theirs. Here each variant's instance (`runtimes/python/instance.py` `serve`, the native
flavor, output captured, no sandbox) runs in a child process with that tree first on `PYTHONPATH`; this process
feeds it batches of `Invoke` frames shaped like the gateway's (an HTTP GET with wrk's one header, a trace id), one
write per batch, and waits for the batch's results, as the server's loop does. The child's user and system CPU
per call is read from /proc; the variants alternate, each round a fresh count, medians reported.

    .venv/bin/python bench/instance_ab.py /tmp/base/src src                     # async handler, concurrency 32
    .venv/bin/python bench/instance_ab.py /tmp/base/src src --function sync-c32 --rounds 7
    .venv/bin/python bench/instance_ab.py /tmp/base/src src --function sync-c1 --batch 1   # the blocking loop
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # (this process only encodes frames: either tree's protocol is the same)

from polyfn.protocol import HEADER, Invoke, Result, encode, from_instance_decoder  # noqa: E402

FUNCTIONS = {
    "async-c32": ("async def handler(event, context):\n    return 'Hello World!'\n", 32),
    "sync-c32": ("def handler(event, context):\n    return 'Hello World!'\n", 32),
    "sync-c1": ("def handler(event, context):\n    return 'Hello World!'\n", 1),
    "chatty-async-c32": ("async def handler(event, context):\n    print('handled', event.path)\n"
                         "    return 'Hello World!'\n", 32),
    "chatty-c1": ("def handler(event, context):\n    print('handled', event.path)\n    return 'Hello World!'\n", 1),
}

CHILD = """
import os, socket, sys
from polyfn.protocol import Ready
from polyfn.runtimes.python import instance
from polyfn.runtimes.python.capture import LogBuffer, capture_output
from polyfn.runtimes.python.flavors import FunctionMeta, load_adapter
from polyfn.runtimes.python.startup import InstanceSpec
sock = socket.socket(fileno=int(sys.argv[1]))
ns = {}
exec(sys.argv[2], ns)
spec = InstanceSpec(instance_id="i", function="f", revision=1, flavor="native", handler="handler.handler",
                    code_dir=".", concurrency=int(sys.argv[3]))
init_buf = LogBuffer(spec.log_line_max, spec.log_lines_max, spec.log_bytes_max)
capture_output(init_buf)
adapter = load_adapter("native", ns["handler"], FunctionMeta("f", 1, "handler.handler", 128, 30, {}))
instance.serve(sock, adapter, spec, init_buf, Ready(os.getpid(), 0.0, ""))
"""


def cpu(pid: int) -> tuple[float, float, int]:
    """(user, system) seconds of the whole process, all its threads, and its threads' context switches."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except FileNotFoundError:
            pass
    return int(fields[11]) / tick, int(fields[12]) / tick, switches


class Child:
    def __init__(self, src: str, code: str, concurrency: int):
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(theirs.fileno()), code, str(concurrency)],
                                     pass_fds=[theirs.fileno()], env=env)
        theirs.close()
        self.sock = ours
        self.data = bytearray()
        self.seq = 0
        self.frame()  # Ready

    def frame(self) -> object:
        data = self.data
        while True:
            if len(data) >= 4:
                end = 4 + HEADER.unpack_from(data)[0]
                if len(data) >= end:
                    msg = from_instance_decoder.decode(bytes(data[4:end]))
                    del data[:end]
                    return msg
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the instance exited")
            data += chunk

    def batch(self, n: int) -> None:
        frames = []
        deadline = time.time() + 30
        for _ in range(n):
            self.seq += 1
            aid = (self.seq * 2654435761 % (1 << 128)).to_bytes(16, "big").hex()
            frames.append(encode(Invoke(self.seq, aid, "http", deadline, "GET", "/", "",
                                        [("host", "127.0.0.1:8080")], b"", "", aid, None)))
        self.sock.sendall(b"".join(frames))
        got = 0
        while got < n:
            msg = self.frame()
            if type(msg) is Result:
                got += 1

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--function", choices=sorted(FUNCTIONS), default="async-c32")
    ap.add_argument("--batch", type=int, default=16, help="Invoke frames per write (1 for a concurrency-1 function)")
    ap.add_argument("--calls", type=int, default=32000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per variant, alternating")
    ap.add_argument("a", help="variant A: a source dir")
    ap.add_argument("b", help="variant B: a source dir")
    args = ap.parse_args()
    code, concurrency = FUNCTIONS[args.function]
    if concurrency == 1:
        args.batch = 1
    children = {"A": Child(args.a, code, concurrency), "B": Child(args.b, code, concurrency)}
    results: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
    try:
        for child in children.values():
            for _ in range(2000 // args.batch):
                child.batch(args.batch)  # warm-up
        for i in range(args.rounds):
            for key in ("A", "B") if i % 2 == 0 else ("B", "A"):
                child = children[key]
                batches = args.calls // args.batch
                u0, s0, c0 = cpu(child.proc.pid)
                for _ in range(batches):
                    child.batch(args.batch)
                u1, s1, c1 = cpu(child.proc.pid)
                n = batches * args.batch
                results[key].append(((u1 - u0) / n * 1e6, (s1 - s0) / n * 1e6, (c1 - c0) / n))
    finally:
        for child in children.values():
            child.close()
    med = {}
    for key, src in (("A", args.a), ("B", args.b)):
        user = [r[0] for r in results[key]]
        system = [r[1] for r in results[key]]
        total = [r[0] + r[1] for r in results[key]]
        med[key] = statistics.median(total)
        print(f"{key} {src}: instance µs/call user {[round(u, 1) for u in user]} median {statistics.median(user):.2f}"
              f" | system median {statistics.median(system):.2f} | total median {med[key]:.2f}"
              f" | context switches/call {statistics.median(r[2] for r in results[key]):.2f}")
    print(f"B/A instance CPU per call ({args.function}, batches of {args.batch}): {med['B'] / med['A']:.3f}"
          f"  (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
