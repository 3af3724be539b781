"""The durable engine on a real database (SQLite and PostgreSQL): executions, history, idempotent starts, task
tokens, nested executions, timers across restarts, tasks run again after a crash."""

import asyncio
import json
import time

import pytest

from polyfn.workflows import arns, machine
from polyfn.workflows.service import WorkflowError

from .conftest import Failure

CHAIN = json.dumps({"StartAt": "Add", "States": {
    "Add": {"Type": "Task", "Resource": "add", "Next": "Double"},
    "Double": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:double", "End": True}}})


async def until_done(service, ex, timeout=30.0):
    done = await service.engine.wait(ex.id, timeout)
    assert done is not None, f"execution {ex.name} did not end in {timeout} s"
    return done


async def test_a_task_chain_runs_and_its_history_is_stored(service, functions):
    functions["add"] = lambda p: {"n": p["n"] + 1}
    functions["double"] = lambda p: {"n": p["n"] * 2}
    await service.create_machine("calc", CHAIN)
    ex = await service.start_execution("calc", "first", '{"n": 20}')
    done = await until_done(service, ex)
    assert (done.status, json.loads(done.output)) == ("SUCCEEDED", {"n": 42})
    events = await service.history(ex.id)
    assert [e["type"] for e in events] == [
        "ExecutionStarted", "TaskStateEntered", "LambdaFunctionScheduled", "LambdaFunctionStarted",
        "LambdaFunctionSucceeded", "TaskStateExited", "TaskStateEntered", "LambdaFunctionScheduled",
        "LambdaFunctionStarted", "LambdaFunctionSucceeded", "TaskStateExited", "ExecutionSucceeded"]
    assert [e["id"] for e in events] == list(range(1, 13))
    assert [e["type"] for e in await service.history(ex.id, reverse=True, limit=2)] == ["ExecutionSucceeded", "TaskStateExited"]
    assert [f for f, _, _ in functions.calls] == ["add", "double"]
    assert await service.store.work_counts() == {}  # nothing left to do


async def test_start_is_idempotent_by_name(service, functions):
    gate = asyncio.Event()

    async def slow(p):
        await gate.wait()
        return p

    functions["add"] = slow
    functions["double"] = slow
    await service.create_machine("calc", CHAIN)
    a = await service.start_execution("calc", "run-1", '{"n": 1}')
    again = await service.start_execution("calc", "run-1", '{ "n" : 1 }')  # the same JSON, another spelling
    assert again.id == a.id
    with pytest.raises(WorkflowError) as e:
        await service.start_execution("calc", "run-1", '{"n": 2}')
    assert e.value.code == "ExecutionAlreadyExists" and "another input" in e.value.message
    gate.set()
    await until_done(service, a)
    with pytest.raises(WorkflowError) as e:
        await service.start_execution("calc", "run-1", '{"n": 1}')
    assert e.value.code == "ExecutionAlreadyExists" and "ended" in e.value.message


@pytest.mark.parametrize(("call", "code"), [
    (lambda s: s.start_execution("nope"), "StateMachineDoesNotExist"),
    (lambda s: s.start_execution("calc", "bad name"), "InvalidName"),
    (lambda s: s.start_execution("calc", None, "{not json"), "InvalidExecutionInput"),
    (lambda s: s.start_execution("calc", None, '"' + "x" * 300_000 + '"'), "InvalidExecutionInput"),
    (lambda s: s.create_machine("calc", '{"StartAt": "X", "States": {}}'), "InvalidDefinition"),
    (lambda s: s.create_machine("calc", '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'),
     "StateMachineAlreadyExists"),
    (lambda s: s.create_machine("a/b", CHAIN), "InvalidName"),
    (lambda s: s.send_task_success("garbage", "{}"), "InvalidToken"),
    (lambda s: s.send_task_success("0" * 32 + ".k1.abc", "{}"), "TaskDoesNotExist"),
    (lambda s: s.update_machine("nope", CHAIN), "StateMachineDoesNotExist"),
])
async def test_refusals(service, call, code):
    await service.create_machine("calc", CHAIN)
    with pytest.raises(WorkflowError) as e:
        await call(service)
    assert e.value.code == code


async def test_creating_the_same_machine_again_returns_it(service):
    a = await service.create_machine("calc", CHAIN, "arn:role")
    b = await service.create_machine("calc", CHAIN, "arn:role")
    assert (a.revision, b.revision) == (1, 1)


async def test_running_executions_keep_their_definition_across_an_update(service, functions):
    gate = asyncio.Event()

    async def add(p):
        await gate.wait()
        return {"n": p["n"] + 1}

    functions["add"] = add
    functions["double"] = lambda p: {"n": p["n"] * 2}
    await service.create_machine("calc", CHAIN)
    old = await service.start_execution("calc", "old", '{"n": 1}')
    m = await service.update_machine("calc", json.dumps({"StartAt": "Add", "States": {
        "Add": {"Type": "Task", "Resource": "add", "End": True}}}))
    assert m.revision == 2
    new = await service.start_execution("calc", "new", '{"n": 1}')
    gate.set()
    assert json.loads((await until_done(service, old)).output) == {"n": 4}
    assert json.loads((await until_done(service, new)).output) == {"n": 2}


async def test_wait_for_task_token(service, functions):
    tokens = []
    functions["ask"] = lambda p: tokens.append(p["token"]) or "asked"
    await service.create_machine("approve", json.dumps({"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "ask", "Payload": {"token.$": "$$.Task.Token"}}, "End": True}}}))
    ex = await service.start_execution("approve")
    for _ in range(200):
        if tokens and "TaskSubmitted" in [e["type"] for e in await service.history(ex.id)]:
            break
        await asyncio.sleep(0.02)
    await service.send_task_heartbeat(tokens[0])
    await service.send_task_success(tokens[0], '{"approved": true}')
    assert json.loads((await until_done(service, ex)).output) == {"approved": True}
    with pytest.raises(WorkflowError) as e:
        await service.send_task_success(tokens[0], "{}")
    assert e.value.code == "TaskTimedOut"  # the execution has ended


async def test_a_task_that_fails_is_retried_then_caught(service, functions):
    calls = []

    def flaky(p):
        calls.append(p)
        raise Failure("Flaky", f"attempt {len(calls)}")

    functions["flaky"] = flaky
    await service.create_machine("retry", json.dumps({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "flaky", "Next": "Done",
              "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "BackoffRate": 1.0, "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Done"}]},
        "Done": {"Type": "Succeed"}}}))
    ex = await service.start_execution("retry", None, '{"k": 1}')
    done = await until_done(service, ex)
    assert json.loads(done.output) == {"k": 1, "error": {"Error": "Flaky", "Cause": "attempt 2"}}
    assert len(calls) == 2


async def test_a_deleted_function_fails_the_execution_with_a_clear_cause(service, functions):
    functions["add"] = lambda p: p  # "double" does not exist
    await service.create_machine("calc", CHAIN)
    done = await until_done(service, await service.start_execution("calc", None, '{"n": 1}'))
    assert done.status == "FAILED" and done.error == "Lambda.ResourceNotFoundException"
    assert "double" in done.cause


async def test_stop_execution(service, functions):
    functions["add"] = lambda p: p
    await service.create_machine("waits", json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}))
    ex = await service.start_execution("waits")
    stopped = await service.stop_execution(ex, "Cancelled", "by a test")
    assert (stopped.status, stopped.error, stopped.cause) == ("ABORTED", "Cancelled", "by a test")
    assert await service.store.work_counts() == {}  # the timer went with it
    assert (await service.stop_execution(stopped)).status == "ABORTED"


async def test_nested_execution_sync(service, functions):
    functions["add"] = lambda p: {"n": p["n"] + 1}
    functions["double"] = lambda p: {"n": p["n"] * 2}
    await service.create_machine("calc", CHAIN)
    await service.create_machine("outer", json.dumps({"StartAt": "Child", "States": {"Child": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": arns.machine_arn("calc"), "Input": {"n.$": "$.n"}},
        "OutputPath": "$.Output", "End": True}}}))
    ex = await service.start_execution("outer", None, '{"n": 4}')
    done = await until_done(service, ex)
    assert (done.status, json.loads(done.output)) == ("SUCCEEDED", {"n": 10})
    kids = await service.list_executions("calc")
    assert len(kids) == 1 and json.loads(kids[0].parent)["execution"] == ex.id
    assert "TaskSubmitted" in [e["type"] for e in await service.history(ex.id)]


async def test_nested_execution_failure_fails_the_task(service, functions):
    await service.create_machine("fails", json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Inner"}}}))
    await service.create_machine("outer", json.dumps({"StartAt": "Child", "States": {"Child": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
        "Parameters": {"StateMachineArn": arns.machine_arn("fails")}, "End": True}}}))
    done = await until_done(service, await service.start_execution("outer"))
    assert done.status == "FAILED" and done.error == "States.TaskFailed"
    assert json.loads(done.cause)["Status"] == "FAILED"


async def test_a_wait_survives_a_restart_and_a_past_timestamp_fires_at_once(make_service, functions):
    svc = await make_service()
    await svc.create_machine("later", json.dumps({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "P"}, "P": {"Type": "Pass", "Result": "woke", "End": True}}}))
    await svc.create_machine("past", json.dumps({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Timestamp": "2001-01-01T00:00:00Z", "End": True}}}))
    t0 = time.time()
    ex = await svc.start_execution("later", None, '{"s": 1}')
    assert (await svc.store.get_execution(ex.id)).status == "RUNNING"
    await svc.stop(1)  # the node goes away before the timer is due
    again = await make_service()  # the same node back
    done = await until_done(again, ex)
    assert (done.status, json.loads(done.output)) == ("SUCCEEDED", "woke")
    assert done.stopped_at - t0 >= 1.0
    past = await again.start_execution("past")
    assert (await again.store.get_execution(past.id)).status == "SUCCEEDED"  # within its first step


async def test_a_task_interrupted_by_a_crash_runs_again_with_the_same_activation_id(make_service, functions):
    started = asyncio.Event()

    async def hangs(p):
        started.set()
        await asyncio.sleep(3600)

    functions["add"] = hangs
    svc = await make_service()
    await svc.create_machine("calc", CHAIN)
    ex = await svc.start_execution("calc", None, '{"n": 1}')
    await asyncio.wait_for(started.wait(), 10)
    await svc.stop(0.1)  # the running task is cut off: its work item stays with this node
    functions["add"] = lambda p: {"n": p["n"] + 1}
    functions["double"] = lambda p: {"n": p["n"] * 2}
    again = await make_service()
    done = await until_done(again, ex)
    assert json.loads(done.output) == {"n": 4}
    adds = [a for f, _, a in functions.calls if f == "add"]
    assert len(adds) == 2 and adds[0] == adds[1]  # at least once, with its idempotency key


async def test_another_node_takes_a_dead_nodes_task_after_its_lease(make_service, functions):
    started = asyncio.Event()

    async def hangs(p):
        started.set()
        await asyncio.sleep(3600)

    functions["add"] = hangs
    a = await make_service(owner="node-a")
    a.engine.work.lease = 0.5
    await a.create_machine("calc", CHAIN)
    ex = await a.create_machine("calc", CHAIN) and await a.start_execution("calc", None, '{"n": 1}')
    await asyncio.wait_for(started.wait(), 10)
    # node-a hangs: its lease is no longer renewed, and it takes no due work (a live pump would claim the item
    # back when its lease ends, in step with its own polls, and win that race against node-b for ever)
    a.engine.work._renew_task.cancel()
    a.engine.work._pump_task.cancel()
    functions["add"] = lambda p: {"n": p["n"] + 1}
    functions["double"] = lambda p: {"n": p["n"] * 2}
    b = await make_service(owner="node-b")
    done = await until_done(b, ex, timeout=30)
    assert json.loads(done.output) == {"n": 4}


async def test_list_executions_pages_newest_first(service, functions):
    await service.create_machine("quick", json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    made = [await service.start_execution("quick", f"run-{i}") for i in range(5)]
    page1 = await service.list_executions("quick", limit=3)
    page2 = await service.list_executions("quick", limit=3, before=(page1[-1].started_at, page1[-1].id))
    assert [e.name for e in page1 + page2] == [e.name for e in reversed(made)]
    assert await service.list_executions("quick", status="RUNNING") == []
    assert (await service.store.count_by_status()).get("SUCCEEDED") == 5


async def test_many_concurrent_executions(service, functions, db_url):
    # (the PostgreSQL variant: the same code, fewer: 300 at once waited over the pool's 30 s for one of its 15
    # connections on a loaded CI machine)
    n = 1000 if db_url.startswith("sqlite") else 120

    async def add(p):
        await asyncio.sleep(0.01)
        return {"n": p["n"] + 1}

    functions["add"] = add
    functions["double"] = lambda p: {"n": p["n"] * 2}
    await service.create_machine("calc", CHAIN)
    exs = await asyncio.gather(*[service.start_execution("calc", f"c{i}", json.dumps({"n": i})) for i in range(n)])
    done = await asyncio.gather(*[until_done(service, ex, 240) for ex in exs])
    assert [json.loads(d.output)["n"] for d in done] == [(i + 1) * 2 for i in range(n)]


def test_iso_timestamps():
    assert machine.iso(0) == "1970-01-01T00:00:00.000Z"


async def test_ended_executions_are_deleted_after_the_retention_with_their_history(make_service, functions):
    from sqlalchemy import func, select

    from polyfn.workflows import store as wfstore

    async def rows(svc, table, execution_id):
        column = table.c.id if table is wfstore.executions else table.c.execution
        return await svc.store.db.read(lambda c: c.execute(select(func.count()).where(column == execution_id)).scalar())

    functions["add"] = lambda p: {"n": p["n"] + 1}
    functions["double"] = lambda p: {"n": p["n"] * 2}
    functions["durable-fn"] = lambda p: {"Status": "SUCCEEDED", "Result": "7"}
    svc = await make_service(retention=3600)
    await svc.create_machine("calc", CHAIN)
    await svc.create_machine("waits", json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}))
    ended = await until_done(svc, await svc.start_execution("calc", "ended", '{"n": 1}'))
    durable, _ = await svc.start_durable("durable-fn", "arn:aws:lambda:us-east-1:000000000000:function:durable-fn", "d",
                                         "{}", None)
    durable = await until_done(svc, durable)
    running = await svc.start_execution("waits", "running")
    assert durable.status == "SUCCEEDED" and await rows(svc, wfstore.ops, durable.id) == 1
    assert await svc.sweep_ended() == 0  # an hour's retention: nothing is old enough
    svc.retention = 0.001
    await asyncio.sleep(0.01)
    assert await svc.sweep_ended() == 2
    for ex in (ended, durable):
        assert await svc.store.get_execution(ex.id) is None
        for table in (wfstore.events, wfstore.ops, wfstore.work):
            assert await rows(svc, table, ex.id) == 0
    assert (await svc.store.get_execution(running.id)).status == "RUNNING"  # running: kept, whatever its age
    assert await svc.history(running.id)
    # a name of a deleted execution can be used again
    again = await until_done(svc, await svc.start_execution("calc", "ended", '{"n": 2}'))
    assert json.loads(again.output) == {"n": 6}


async def test_the_retention_sweep_runs_by_itself(make_service, functions):
    functions["add"] = lambda p: p
    functions["double"] = lambda p: p
    svc = await make_service(retention=0.2)
    await svc.create_machine("calc", CHAIN)
    ex = await until_done(svc, await svc.start_execution("calc", None, '{"n": 1}'))
    deadline = time.monotonic() + 10
    while await svc.store.get_execution(ex.id) is not None:
        assert time.monotonic() < deadline, "the sweep did not delete an execution past its retention"
        await asyncio.sleep(0.05)
