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
  PyPI): each step sleeps `--step-ms`; wall time of a synchronous Invoke vs 50 × the step's own time.

    .venv/bin/python bench/workflows.py                # all four
    .venv/bin/python bench/workflows.py --runs 10 --concurrent 300 --no-durable
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
import zipfile

import httpx
from _common import PolyfnServer, fmt, percentile, print_header, table, tree_cpu_seconds

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


def durable(server: PolyfnServer, steps: int, step_ms: float) -> tuple[float, float]:
    import boto3
    from botocore.config import Config

    lam = boto3.client("lambda", endpoint_url=server.url(""), region_name="us-east-1", aws_access_key_id="polyfn-admin",
                       aws_secret_access_key=server.key, config=Config(read_timeout=600, retries={"max_attempts": 1}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", DURABLE)
        z.writestr("requirements.txt", "aws-durable-execution-sdk-python==3.0.0\n")
    lam.create_function(FunctionName="steps", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                        Handler="lambda_function.handler", Code={"ZipFile": buf.getvalue()}, Timeout=300,
                        DurableConfig={"ExecutionTimeout": 3600})
    lam.invoke(FunctionName="steps", Payload=json.dumps({"steps": 2, "ms": 1}))  # warm
    t0 = time.perf_counter()
    out = lam.invoke(FunctionName="steps", Payload=json.dumps({"steps": steps, "ms": step_ms}))
    wall = time.perf_counter() - t0
    assert json.loads(out["Payload"].read()) == {"total": steps * (steps - 1) // 2}
    return wall, steps * step_ms / 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="executions per chain measurement")
    p.add_argument("--concurrent", type=int, default=1000, help="executions started at once")
    p.add_argument("--steps", type=int, default=50, help="steps of the durable function")
    p.add_argument("--step-ms", type=float, default=20.0, help="each durable step's own time (ms)")
    p.add_argument("--no-durable", action="store_true", help="skip the durable function (needs PyPI)")
    a = p.parse_args()
    print_header("Workflows: transitions, concurrent executions, durable steps")
    with PolyfnServer(log_level="WARNING") as server:
        api = httpx.Client(base_url=server.url(""), headers={"authorization": f"Bearer {server.key}"}, timeout=600)
        server.deploy("noop", {"main.py": NOOP}, handler="main.handler", max_instances=8)
        for name, d in (("pass100", chain(100, {"Type": "Pass"})),
                        ("task20", chain(20, {"Type": "Task", "Resource": "noop"})),
                        ("fanout", {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "noop", "Next": "B"},
                                                               "B": {"Type": "Pass", "Next": "C"},
                                                               "C": {"Type": "Task", "Resource": "noop", "End": True}}})):
            r = api.put(f"/v1/workflows/{name}", json={"definition": d})
            assert r.status_code == 200, r.text
        passes = run_chain(api, "pass100", a.runs, 100)
        tasks = run_chain(api, "task20", a.runs, 20)
        invokes = direct_invocations(api, a.runs)
        inv50 = percentile(invokes, 50)
        rows = [
            ["100-state Pass chain", fmt(percentile(passes, 50), 3), fmt(percentile(passes, 99), 3), "-"],
            ["20-Task chain", fmt(percentile(tasks, 50), 3), fmt(percentile(tasks, 99), 3),
             fmt(percentile(tasks, 50) - inv50, 3)],
            ["peer: one direct invocation", fmt(inv50, 3), fmt(percentile(invokes, 99), 3), "-"],
        ]
        print(table(["per transition (ms)", "p50", "p99", "p50 overhead over an invocation"], rows))
        print(f"20-Task chain / direct invocation (p50): {percentile(tasks, 50) / inv50:.2f}x")
        print()
        assert server.proc is not None
        cpu0 = tree_cpu_seconds(server.proc.pid)
        errors, started, total = asyncio.run(concurrent(server.url(""), server.key, a.concurrent))
        cpu = tree_cpu_seconds(server.proc.pid) - cpu0
        print(f"{a.concurrent} concurrent executions (Task → Pass → Task): {errors} errors; all started in "
              f"{started:.2f} s, all ended in {total:.2f} s ({a.concurrent / total:.0f} executions/s); node CPU "
              f"{cpu * 1000 / a.concurrent:.2f} ms per execution (its API call, 2 invocations, 7 history events; "
              f"the machine's load decides the rest)")
        if not a.no_durable:
            wall, own = durable(server, a.steps, a.step_ms)
            budget = own + a.steps * 0.002
            print(f"durable function, {a.steps} steps of {a.step_ms:g} ms: wall {wall * 1000:.0f} ms; the steps' own "
                  f"time {own * 1000:.0f} ms; overhead {(wall - own) * 1000 / a.steps:.2f} ms per step "
                  f"(target: ≤ 2 ms per step, i.e. wall ≤ {budget * 1000:.0f} ms: {'met' if wall <= budget else 'NOT met'})")


if __name__ == "__main__":
    main()
