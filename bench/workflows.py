"""Workflows: what a state transition costs on the embedded engine, how many executions a node runs at once, and
what a durable function's step costs. Prints same-run figures and ratios (the machine is shared: absolute numbers
move from one run to the next, the ratios much less).

* **100-state Pass chain**: executions of 100 Pass states (`?wait=true` on `/v1/workflows/NAME/executions`); per
  transition = the execution's own time (stopped - started, recorded by the server) / 100, p50/p99 over the runs.
* **20-Task chain**: 20 Tasks invoking a trivial function; per transition = execution time / 20. The peer in the
  same run: the same function invoked directly (`POST /v1/functions/NAME/invoke`, the activation's duration as
  the server recorded it), so "overhead per transition" = per transition - one invocation.
* **1,000 concurrent executions** of a Task → Pass → Task machine, started at once: errors, all-done time.
* **50-step durable function** (aws-durable-execution-sdk-python, installed into the function at deploy: needs
  PyPI): each step sleeps `--step-ms`; wall time of a synchronous Invoke vs 50 × the step's own time, over
  `--durable-runs` invocations (the best and the median), and the node's CPU per step. The peer in the same run:
  the same handler and SDK in this process with a service that answers every checkpoint at once (no HTTP, no
  store) — what the SDK itself costs per step (it waits 1 ms to batch each synchronous checkpoint and polls its
  stop signal every 100 ms, so an invocation ends up to 100 ms after the handler returned). A second peer: the
  same with the SDK's own client (boto3, SigV4, HTTP) against a stub service in another process that answers
  every call at once — what the SDK and its client cost without polyfn. polyfn's share per step = (polyfn's
  wall − the SDK's own wall) / steps, and the node's share = (polyfn's wall − the SDK with its client) / steps.

    .venv/bin/python bench/workflows.py                # all four
    .venv/bin/python bench/workflows.py --runs 10 --concurrent 300 --no-durable
    .venv/bin/python bench/workflows.py --only durable
    .venv/bin/python bench/workflows.py --only chains --vs /path/to/main/src --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Any

import httpx
from _common import (
    PolyfnServer,
    cpu_seconds,
    fmt,
    free_port,
    main_thread_cpu,
    percentile,
    print_header,
    table,
    tree_cpu_seconds,
    wait_http,
)

NOOP = "def handler(event, context):\n    return event\n"
DURABLE = '''
import time
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def work(step_context, i, ms):
    time.sleep(ms / 1000)
    return i


@durable_execution
def handler(event, context: DurableContext):
    total = 0
    for i in range(event["steps"]):
        total += context.step(work(i, event["ms"]), name=f"step-{i}")
    return {"total": total}
'''


def chain(n: int, state: dict[str, object]) -> dict[str, object]:
    names = [f"S{i}" for i in range(n)]
    states = {name: {**state, **({"Next": names[i + 1]} if i + 1 < n else {"End": True})} for i, name in enumerate(names)}
    return {"StartAt": names[0], "States": states}


def run_chain(api: httpx.Client, name: str, runs: int, transitions: int) -> list[float]:
    """Per-transition ms of `runs` sequential executions (server-recorded execution time / transitions)."""
    out = []
    for i in range(runs + 2):
        ex = api.post(f"/v1/workflows/{name}/executions", params={"wait": "true"}, json={"input": {"n": i}}).json()
        assert ex["status"] == "SUCCEEDED", ex
        if i >= 2:  # the first runs warm the instance and the definition cache
            out.append((ex["stopped_at"] - ex["started_at"]) * 1000 / transitions)
    return out


def direct_invocations(api: httpx.Client, runs: int) -> list[float]:
    out = []
    for i in range(runs + 2):
        r = api.post("/v1/functions/noop/invoke", json={"n": i})
        act = api.get(f"/v1/activations/{r.headers['x-polyfn-activation-id']}").json()
        if i >= 2:
            out.append(float(act["duration_ms"]))
    return out


async def concurrent(url: str, key: str, n: int) -> tuple[int, float, float]:
    """Start `n` executions at once; (errors, seconds to start them all, seconds until all ended)."""
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300,
                                 limits=httpx.Limits(max_connections=64)) as c:
        t0 = time.perf_counter()
        rs = await asyncio.gather(*[c.post("/v1/workflows/fanout/executions", json={"input": {"n": i}, "name": f"c{i}"})
                                    for i in range(n)])
        started = time.perf_counter() - t0
        errors = sum(1 for r in rs if r.status_code != 201)
        while True:
            done = (await c.get("/v1/workflows/fanout/executions", params={"limit": 1000})).json()["executions"]
            ended = [e for e in done if e["status"] != "RUNNING"]
            if len(ended) >= n - errors:
                errors += sum(1 for e in ended if e["status"] != "SUCCEEDED")
                return errors, started, time.perf_counter() - t0
            await asyncio.sleep(0.2)


SDK = "aws-durable-execution-sdk-python==3.0.0"


def durable(server: PolyfnServer, steps: int, step_ms: float, runs: int) -> tuple[list[float], float]:
    """Walls (s) of `runs` synchronous invocations of the `steps`-step function; the node's CPU seconds per step."""
    import boto3
    from botocore.config import Config

    lam = boto3.client("lambda", endpoint_url=server.url(""), region_name="us-east-1", aws_access_key_id="polyfn-admin",
                       aws_secret_access_key=server.key, config=Config(read_timeout=600, retries={"max_attempts": 1}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", DURABLE)
        z.writestr("requirements.txt", SDK + "\n")
    lam.create_function(FunctionName="steps", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                        Handler="lambda_function.handler", Code={"ZipFile": buf.getvalue()}, Timeout=300,
                        DurableConfig={"ExecutionTimeout": 3600})
    lam.invoke(FunctionName="steps", Payload=json.dumps({"steps": 2, "ms": 1}))  # warm
    assert server.proc is not None
    walls, cpu = [], 0.0
    for _ in range(runs):
        c0 = cpu_seconds(server.proc.pid)
        t0 = time.perf_counter()
        out = lam.invoke(FunctionName="steps", Payload=json.dumps({"steps": steps, "ms": step_ms}))
        walls.append(time.perf_counter() - t0)
        cpu += cpu_seconds(server.proc.pid) - c0
        assert json.loads(out["Payload"].read()) == {"total": steps * (steps - 1) // 2}
    return walls, cpu / (runs * steps)


STUB = r"""
import asyncio, sys

OK = (b'{"CheckpointToken":"t","NewExecutionState":{"Operations":[]}}', b'{"Operations":[]}')


async def serve(reader, writer):
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":", 1)[1])
        if n:
            await reader.readexactly(n)
        body = OK[0] if head.startswith(b"POST") else OK[1]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def sdk_alone(steps: int, step_ms: float, runs: int) -> tuple[list[float], list[float] | None] | None:
    """Walls (s) of the same handler run by the SDK in this process against a service that answers at once:
    in-process (no client), and through the SDK's own boto3 client to a stub HTTP service in another process
    (None when the stub does not start)."""
    target = tempfile.mkdtemp(prefix="polyfn-bench-sdk-")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, SDK],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"(the SDK alone is not measured: pip could not install {SDK}: {r.stderr.strip()[-200:]})")
        return None
    sys.path.insert(0, target)
    import boto3
    from aws_durable_execution_sdk_python.execution import (
        DurableExecutionInvocationInput,
        DurableExecutionInvocationInputWithClient,
    )
    from aws_durable_execution_sdk_python.lambda_service import (
        CheckpointOutput,
        CheckpointUpdatedExecutionState,
        LambdaClient,
        StateOutput,
    )
    from botocore.config import Config

    class Instant:
        """A durable service that stores nothing and answers every checkpoint at once."""

        n = 0

        def checkpoint(self, durable_execution_arn: str, checkpoint_token: str, updates: Any, client_token: Any) -> Any:
            self.n += 1
            return CheckpointOutput(checkpoint_token=f"t{self.n}", new_execution_state=CheckpointUpdatedExecutionState())

        def get_execution_state(self, *_a: Any, **_k: Any) -> Any:
            return StateOutput(operations=[], next_marker=None)

    class Context:
        aws_request_id, function_name = "bench", "steps"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 300_000

    ns: dict[str, Any] = {}
    exec(compile(DURABLE, "lambda_function.py", "exec"), ns)
    key = "0" * 32

    def measure(service: Any) -> list[float]:
        walls = []
        for _ in range(runs + 1):
            payload = {"DurableExecutionArn": f"arn:aws:lambda:us-east-1:0:function:steps:$LATEST/durable-execution/b/{key}",
                       "CheckpointToken": "t0", "InitialExecutionState": {"NextMarker": "", "Operations": [
                           {"Id": key, "Type": "EXECUTION", "Status": "STARTED",
                            "StartTimestamp": int(time.time() * 1000),
                            "ExecutionDetails": {"InputPayload": json.dumps({"steps": steps, "ms": step_ms})}}]}}
            event = DurableExecutionInvocationInputWithClient.from_durable_execution_invocation_input(
                DurableExecutionInvocationInput.from_json_dict(payload), service)
            t0 = time.perf_counter()
            out = ns["handler"](event, Context())
            walls.append(time.perf_counter() - t0)
            assert json.loads(out["Result"]) == {"total": steps * (steps - 1) // 2}, out
        return walls[1:]  # the first one warms the imports (and the client's connection)

    alone = measure(Instant())
    port = free_port()
    stub = subprocess.Popen([sys.executable, "-c", STUB, str(port)])
    try:
        wait_http(port, "/", stub)
        client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench",
                              config=Config(connect_timeout=5, read_timeout=50, retries={"max_attempts": 1}))
        with_client = measure(LambdaClient(client))
    except (RuntimeError, OSError) as e:
        print(f"(the SDK with its client is not measured: the stub service did not start: {e})")
        with_client = None
    finally:
        stub.kill()
        stub.wait()
    return alone, with_client


def prepare(server: PolyfnServer) -> httpx.Client:
    """The function and the three machines the parts run."""
    api = httpx.Client(base_url=server.url(""), headers={"authorization": f"Bearer {server.key}"}, timeout=600)
    server.deploy("noop", {"main.py": NOOP}, handler="main.handler", max_instances=8)
    for name, d in (("pass100", chain(100, {"Type": "Pass"})),
                    ("task20", chain(20, {"Type": "Task", "Resource": "noop"})),
                    ("fanout", {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "noop", "Next": "B"},
                                                           "B": {"Type": "Pass", "Next": "C"},
                                                           "C": {"Type": "Task", "Resource": "noop", "End": True}}})):
        r = api.put(f"/v1/workflows/{name}", json={"definition": d})
        assert r.status_code == 200, r.text
    return api


def measure_chains(server: PolyfnServer, api: httpx.Client, runs: int) -> dict[str, Any]:
    """Per-transition ms of the Pass and Task chains and of direct invocations; the node's CPU seconds per Task
    (all threads, and the event loop's thread), each execution's start and wait requests included."""
    assert server.proc is not None
    pid = server.proc.pid
    passes = run_chain(api, "pass100", runs, 100)
    run_chain(api, "task20", 0, 20)  # warm
    c0, l0 = cpu_seconds(pid), main_thread_cpu(pid)
    tasks = run_chain(api, "task20", runs, 20)
    n = (runs + 2) * 20
    cpu, loop = (cpu_seconds(pid) - c0) / n, (main_thread_cpu(pid) - l0) / n
    return {"passes": passes, "tasks": tasks, "invokes": direct_invocations(api, runs), "cpu_task": cpu,
            "loop_task": loop}


def compare(old_src: str, runs: int, rounds: int) -> None:
    """The chains on a node of `old_src` and on one of this tree, alternately; each measurement's figures,
    then all of each pooled."""
    pooled: dict[str, dict[str, list[float]]] = {}
    rows = []
    for i in range(rounds):
        for label, src in (("old", old_src), ("new", None)):
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            with PolyfnServer(log_level="WARNING", env={"PYTHONPATH": src} if src else None) as server:
                c = measure_chains(server, prepare(server), runs)
            inv50 = percentile(c["invokes"], 50)
            rows.append([f"{label} #{i + 1} (load {load})", fmt(percentile(c["tasks"], 50), 3),
                         fmt(percentile(c["tasks"], 99), 3), fmt(inv50, 3),
                         f"{percentile(c['tasks'], 50) - inv50:.3f} / {percentile(c['tasks'], 99) - inv50:.3f}",
                         f"{c['cpu_task'] * 1e6:.0f}", f"{c['loop_task'] * 1e6:.0f}",
                         fmt(percentile(c["passes"], 50), 3)])
            mine = pooled.setdefault(label, {"tasks": [], "invokes": [], "cpu": [], "loop": []})
            mine["tasks"] += c["tasks"]
            mine["invokes"] += c["invokes"]
            mine["cpu"].append(c["cpu_task"])
            mine["loop"].append(c["loop_task"])
    for label, m in pooled.items():
        inv50 = percentile(m["invokes"], 50)
        rows.append([f"{label}, all", fmt(percentile(m["tasks"], 50), 3), fmt(percentile(m["tasks"], 99), 3),
                     fmt(inv50, 3), f"{percentile(m['tasks'], 50) - inv50:.3f} / {percentile(m['tasks'], 99) - inv50:.3f}",
                     f"{statistics.median(m['cpu']) * 1e6:.0f}", f"{statistics.median(m['loop']) * 1e6:.0f}", "-"])
    print(f"old = {old_src}, new = this tree; {runs} executions of each chain per measurement")
    print(table(["20-Task chain, per transition (ms)", "p50", "p99", "direct invocation p50",
                 "overhead p50 / p99", "node CPU/Task (µs)", "loop thread CPU/Task (µs)", "Pass chain p50"], rows))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="executions per chain measurement")
    p.add_argument("--concurrent", type=int, default=1000, help="executions started at once")
    p.add_argument("--steps", type=int, default=50, help="steps of the durable function")
    p.add_argument("--step-ms", type=float, default=20.0, help="each durable step's own time (ms)")
    p.add_argument("--durable-runs", type=int, default=5, help="invocations of the durable function")
    p.add_argument("--no-durable", action="store_true", help="skip the durable function (needs PyPI)")
    p.add_argument("--only", choices=("chains", "concurrent", "durable"), help="one part only")
    p.add_argument("--src", help="run the node from this source tree (PYTHONPATH), e.g. another checkout's src")
    p.add_argument("--vs", metavar="SRC", help="chains only: a node of SRC and one of this tree, alternately")
    p.add_argument("--rounds", type=int, default=2, help="with --vs: measurements of each")
    a = p.parse_args()
    parts = {a.only} if a.only else {"chains", "concurrent"} | (set() if a.no_durable else {"durable"})
    print_header("Workflows: transitions, concurrent executions, durable steps")
    verdicts: list[str] = []
    if a.vs:
        compare(a.vs, a.runs, a.rounds)
        return
    with PolyfnServer(log_level="WARNING", env={"PYTHONPATH": a.src} if a.src else None) as server:
        api = prepare(server)
        if "chains" in parts:
            c = measure_chains(server, api, a.runs)
            passes, tasks, invokes = c["passes"], c["tasks"], c["invokes"]
            inv50 = percentile(invokes, 50)
            over50, over99 = percentile(tasks, 50) - inv50, percentile(tasks, 99) - inv50
            rows = [
                ["100-state Pass chain", fmt(percentile(passes, 50), 3), fmt(percentile(passes, 99), 3), "-"],
                ["20-Task chain", fmt(percentile(tasks, 50), 3), fmt(percentile(tasks, 99), 3),
                 f"{over50:.3f} / {over99:.3f}"],
                ["peer: one direct invocation", fmt(inv50, 3), fmt(percentile(invokes, 99), 3), "-"],
            ]
            print(table(["per transition (ms)", "p50", "p99", "overhead over an invocation p50 / p99"], rows))
            print(f"20-Task chain / direct invocation (p50): {percentile(tasks, 50) / inv50:.2f}x")
            print(f"node CPU per Task (the invocation included): {c['cpu_task'] * 1e6:.0f} µs, of which the event "
                  f"loop's thread {c['loop_task'] * 1e6:.0f} µs")
            verdicts += [f"100-state Pass chain ≤ 1 ms per transition: p50 {verdict(percentile(passes, 50) <= 1)}, "
                         f"p99 {verdict(percentile(passes, 99) <= 1)}",
                         f"20-Task chain ≤ 1 ms per transition over the invocation itself: p50 {verdict(over50 <= 1)}, "
                         f"p99 {verdict(over99 <= 1)}"]
            print()
        if "concurrent" in parts:
            assert server.proc is not None
            cpu0 = tree_cpu_seconds(server.proc.pid)
            errors, started, total = asyncio.run(concurrent(server.url(""), server.key, a.concurrent))
            cpu = tree_cpu_seconds(server.proc.pid) - cpu0
            print(f"{a.concurrent} concurrent executions (Task → Pass → Task): {errors} errors; all started in "
                  f"{started:.2f} s, all ended in {total:.2f} s ({a.concurrent / total:.0f} executions/s); node CPU "
                  f"{cpu * 1000 / a.concurrent:.2f} ms per execution (its API call, 2 invocations, 7 history events; "
                  f"the machine's load decides the rest)")
            verdicts.append(f"≥ 1,000 concurrent executions without error ({a.concurrent}, {errors} errors): "
                            f"{verdict(a.concurrent >= 1000 and errors == 0)}")
            print()
        if "durable" in parts:
            walls, cpu_step = durable(server, a.steps, a.step_ms, a.durable_runs)
            own = a.steps * a.step_ms / 1000
            budget = own + a.steps * 0.002
            peers = sdk_alone(a.steps, a.step_ms, a.durable_runs)
            alone, with_client = peers if peers else (None, None)
            mid = statistics.median(walls)

            def row(label: str, w: list[float]) -> list[str]:
                return [label, f"{min(w) * 1000:.0f}", f"{statistics.median(w) * 1000:.0f}",
                        f"{(min(w) - own) * 1000 / a.steps:.2f}", f"{(statistics.median(w) - own) * 1000 / a.steps:.2f}"]

            rows = [row("polyfn (boto3 Invoke, RequestResponse)", walls)]
            if alone:
                rows.append(row("peer: the SDK alone, a service that answers at once", alone))
            if with_client:
                rows.append(row("peer: the SDK + its boto3 client, a stub HTTP service", with_client))
            print(table([f"durable function, {a.steps} steps of {a.step_ms:g} ms ({len(walls)} runs)", "wall best (ms)",
                         "wall median (ms)", "overhead/step best (ms)", "overhead/step median (ms)"], rows))
            print(f"node CPU per step (one CheckpointDurableExecution: HTTP from the instance, SigV4, the step, one "
                  f"SQLite transaction): {cpu_step * 1000:.2f} ms")
            if alone:
                share = (statistics.median(walls) - statistics.median(alone)) * 1000 / a.steps
                print(f"polyfn's share per step (median walls, polyfn − the SDK alone): {share:.2f} ms")
                verdicts.append(f"polyfn's share of a durable step ≤ 2 ms ({share:.2f} ms): {verdict(share <= 2)}")
            if with_client:
                node = (statistics.median(walls) - statistics.median(with_client)) * 1000 / a.steps
                print(f"the node's share per step (median walls, polyfn − the SDK with its client): {node:.2f} ms")
            verdicts.append(f"durable function: wall ≤ {a.steps} × step + 2 ms per step, i.e. ≤ {budget * 1000:.0f} ms "
                            f"(median {mid * 1000:.0f} ms): {verdict(mid <= budget)}"
                            + (f" — the SDK alone takes {statistics.median(alone) * 1000:.0f} ms here" if alone else ""))
    print()
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
