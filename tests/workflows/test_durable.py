"""The durable-execution core (workflows/durable.py), driven the way AWS's SDK and the engine drive it."""

import random

import pytest

from polyfn.workflows import durable

T0 = 1_800_000_000.0
KEY = "e" * 32


def fresh(timeout=None):
    st = durable.new_state(KEY, f"arn:aws:lambda:us-east-1:0:function:f:$LATEST/durable-execution/run/{KEY}", "f",
                           '{"n": 1}', T0, timeout)
    out = durable.step(st, {"type": "start"}, T0, random.Random(1))
    return st, out


def invoke_cmd(out):
    (cmd,) = [c for c in out.commands if c["op"] == "invoke"]
    return cmd


def checkpoint(st, token, *updates, now=T0):
    return durable.step(st, {"type": "checkpoint", "token": token, "updates": list(updates)}, now, random.Random(1))


def returned(st, cmd, status, now=T0, **extra):
    return durable.step(st, {"type": "task_result", "token": cmd["token"], "ok": True,
                             "output": {"Status": status, **extra}}, now, random.Random(1))


def test_first_invocation_input_has_the_execution_operation():
    _st, out = fresh()
    cmd = invoke_cmd(out)
    p = cmd["payload"]
    assert p["DurableExecutionArn"].endswith(KEY) and p["CheckpointToken"].startswith(KEY)
    (ex,) = p["InitialExecutionState"]["Operations"]
    assert ex == {"Id": KEY, "Type": "EXECUTION", "Status": "STARTED", "StartTimestamp": int(T0 * 1000),
                  "ExecutionDetails": {"InputPayload": '{"n": 1}'}}
    assert [e["type"] for e in out.events] == ["ExecutionStarted"]


def test_steps_then_success():
    st, out = fresh()
    cmd = invoke_cmd(out)
    tok = cmd["payload"]["CheckpointToken"]
    r = checkpoint(st, tok, {"Id": "1", "Type": "STEP", "Action": "START", "Name": "a", "SubType": "Step"})
    assert r.reply["NewExecutionState"]["Operations"][0]["Status"] == "STARTED"
    tok = r.reply["CheckpointToken"]
    r = checkpoint(st, tok, {"Id": "1", "Type": "STEP", "Action": "SUCCEED", "Payload": "2"})
    op = r.reply["NewExecutionState"]["Operations"][0]
    assert op["Status"] == "SUCCEEDED" and op["StepDetails"]["Result"] == "2" and op["Name"] == "a"
    returned(st, cmd, "SUCCEEDED", Result='{"n": 2}')
    assert (st["status"], st["output"]) == ("SUCCEEDED", '{"n": 2}')


def test_a_stale_or_foreign_token_is_refused():
    st, out = fresh()
    with pytest.raises(durable.CheckpointRefused):
        checkpoint(st, "nope", {"Id": "1", "Type": "STEP", "Action": "START"})
    with pytest.raises(durable.CheckpointRefused):
        checkpoint(st, f"{KEY}.7.1", {"Id": "1", "Type": "STEP", "Action": "START"})
    with pytest.raises(durable.CheckpointRefused):
        checkpoint(st, invoke_cmd(out)["payload"]["CheckpointToken"], {"Id": "1", "Type": "STEP", "Action": "EXPLODE"})
    first = invoke_cmd(out)["payload"]["CheckpointToken"]
    checkpoint(st, first, {"Id": "1", "Type": "STEP", "Action": "START"})
    with pytest.raises(durable.CheckpointRefused, match="consumed"):  # each checkpoint consumes its token
        checkpoint(st, first, {"Id": "2", "Type": "STEP", "Action": "START"})


def test_a_wait_suspends_and_its_timer_invokes_again():
    st, out = fresh()
    cmd = invoke_cmd(out)
    r = checkpoint(st, cmd["payload"]["CheckpointToken"],
                   {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 30}})
    assert r.reply["NewExecutionState"]["Operations"][0]["WaitDetails"]["ScheduledEndTimestamp"] == int((T0 + 30) * 1000)
    (timer,) = [c for c in r.commands if c["op"] == "timer"]
    assert timer["at"] == T0 + 30
    assert returned(st, cmd, "PENDING").commands == []  # suspended, nothing to do yet
    again = durable.step(st, {"type": "timer", "id": timer["id"]}, T0 + 30, random.Random(1))
    cmd2 = invoke_cmd(again)
    assert cmd2["payload"]["UpdatedOperationIds"] == ["w"]
    wait = next(o for o in cmd2["payload"]["InitialExecutionState"]["Operations"] if o["Id"] == "w")
    assert wait["Status"] == "SUCCEEDED"
    # the old invocation's checkpoint token no longer works
    with pytest.raises(durable.CheckpointRefused):
        checkpoint(st, cmd["payload"]["CheckpointToken"], {"Id": "2", "Type": "STEP", "Action": "START"})


def test_a_callback_gets_an_id_and_its_answer_resumes_the_function():
    st, out = fresh()
    cmd = invoke_cmd(out)
    r = checkpoint(st, cmd["payload"]["CheckpointToken"], {"Id": "cb", "Type": "CALLBACK", "Action": "START",
                                                            "CallbackOptions": {"TimeoutSeconds": 60}})
    cid = r.reply["NewExecutionState"]["Operations"][0]["CallbackDetails"]["CallbackId"]
    assert cid.startswith(KEY + ".cb.")
    returned(st, cmd, "PENDING")
    assert not durable.step(st, {"type": "callback", "callback_id": cid + "x", "ok": True, "result": "1"}, T0,
                            random.Random(1)).accepted
    res = durable.step(st, {"type": "callback", "callback_id": cid, "ok": True, "result": "yes"}, T0 + 5, random.Random(1))
    assert invoke_cmd(res)["payload"]["UpdatedOperationIds"] == ["cb"]
    assert {"op": "cancel", "ids": ["cb-timeout-cb"]} in res.commands  # its timeout timer is cancelled
    assert st["ops"]["cb"]["CallbackDetails"]["Result"] == "yes"


def test_a_callback_that_times_out():
    st, out = fresh()
    cmd = invoke_cmd(out)
    r = checkpoint(st, cmd["payload"]["CheckpointToken"], {"Id": "cb", "Type": "CALLBACK", "Action": "START",
                                                            "CallbackOptions": {"TimeoutSeconds": 60}})
    returned(st, cmd, "PENDING")
    timer = next(c for c in r.commands if c["op"] == "timer")
    again = durable.step(st, {"type": "timer", "id": timer["id"]}, T0 + 60, random.Random(1))
    assert st["ops"]["cb"]["Status"] == "TIMED_OUT" and invoke_cmd(again)


def test_a_step_retry_is_ready_after_its_delay():
    st, out = fresh()
    cmd = invoke_cmd(out)
    tok = cmd["payload"]["CheckpointToken"]
    r = checkpoint(st, tok, {"Id": "s", "Type": "STEP", "Action": "START"})
    r = checkpoint(st, r.reply["CheckpointToken"], {"Id": "s", "Type": "STEP", "Action": "RETRY",
                                                    "StepOptions": {"NextAttemptDelaySeconds": 5},
                                                    "Error": {"ErrorType": "Flaky"}})
    op = r.reply["NewExecutionState"]["Operations"][0]
    assert op["Status"] == "PENDING" and op["StepDetails"]["Attempt"] == 1
    returned(st, cmd, "PENDING")
    timer = next(c for c in r.commands if c["op"] == "timer")
    assert timer["at"] == T0 + 5
    again = durable.step(st, {"type": "timer", "id": timer["id"]}, T0 + 5, random.Random(1))
    assert st["ops"]["s"]["Status"] == "READY" and invoke_cmd(again)


def test_a_failing_invocation_is_retried_twice_then_fails_the_execution():
    st, out = fresh()
    cmd = invoke_cmd(out)
    for attempt in range(3):
        r = durable.step(st, {"type": "task_result", "token": cmd["token"], "ok": False, "error": "Runtime.ExitError",
                              "cause": "boom"}, T0, random.Random(1))
        if attempt < 2:
            timer = next(c for c in r.commands if c["op"] == "timer")
            cmd = invoke_cmd(durable.step(st, {"type": "timer", "id": timer["id"]}, T0 + 2, random.Random(1)))
    assert (st["status"], st["error"]) == ("FAILED", "Runtime.ExitError")


def test_a_chained_invoke_runs_a_function_and_resumes():
    st, out = fresh()
    cmd = invoke_cmd(out)
    r = checkpoint(st, cmd["payload"]["CheckpointToken"], {"Id": "c", "Type": "CHAINED_INVOKE", "Action": "START",
                                                            "Payload": '{"x": 1}',
                                                            "ChainedInvokeOptions": {"FunctionName": "other"}})
    (call,) = [c for c in r.commands if c["op"] == "invoke"]
    assert call["kind"] == "lambda:invoke" and call["payload"] == {"FunctionName": "other", "Payload": {"x": 1}}
    returned(st, cmd, "PENDING")
    res = durable.step(st, {"type": "task_result", "token": call["token"], "ok": True, "output": {"Payload": {"y": 2}}},
                       T0, random.Random(1))
    assert st["ops"]["c"]["ChainedInvokeDetails"]["Result"] == '{"y": 2}' and invoke_cmd(res)


def test_execution_timeout_and_stop():
    st, out = fresh(timeout=10)
    timer = next(c for c in out.commands if c["op"] == "timer")
    durable.step(st, {"type": "timer", "id": timer["id"]}, T0 + 10, random.Random(1))
    assert st["status"] == "TIMED_OUT" and st["ops"][KEY]["Status"] == "TIMED_OUT"
    st, out = fresh()
    durable.step(st, {"type": "stop", "error": {"ErrorType": "Stopped", "ErrorMessage": "by hand"}}, T0, random.Random(1))
    assert (st["status"], st["ops"][KEY]["Status"], st["cause"]) == ("ABORTED", "STOPPED", "by hand")


def _stored(st, out):
    """What the engine stores after a step, read back the way it reads an execution (row text + op rows)."""
    text, rows = durable.DurableProgram.persist(st, out)
    return text, rows


def test_a_checkpoint_stores_only_the_operations_it_changed_and_the_state_reads_back_the_same():
    st, out = fresh()
    text, rows = _stored(st, None)  # a new execution: every operation (just the EXECUTION)
    assert [r[0] for r in rows] == [KEY] and '"ops"' not in text
    table = {i: (n, body) for i, n, body in rows}
    tok = invoke_cmd(out)["payload"]["CheckpointToken"]
    for i in range(30):
        r = checkpoint(st, tok, {"Id": f"s{i}", "Type": "STEP", "Action": "START", "Name": f"n{i}"},
                       {"Id": f"s{i}", "Type": "STEP", "Action": "SUCCEED", "Payload": str(i)})
        tok = r.reply["CheckpointToken"]
        text, rows = _stored(st, r)
        assert [(i_, n) for i_, n, _ in rows] == [(f"s{i}", i + 1)]  # one row, at its place; the row text stays small
        assert len(text) < 600
        table.update({i_: (n, body) for i_, n, body in rows})
    # a callback started early and answered late: its row is written again, its place kept
    r = checkpoint(st, tok, {"Id": "cb", "Type": "CALLBACK", "Action": "START"})
    tok = r.reply["CheckpointToken"]
    table.update({i_: (n, b) for i_, n, b in _stored(st, r)[1]})
    r = checkpoint(st, tok, {"Id": "s99", "Type": "STEP", "Action": "START"})
    table.update({i_: (n, b) for i_, n, b in _stored(st, r)[1]})
    cb_id = st["ops"]["cb"]["CallbackDetails"]["CallbackId"]
    r = durable.step(st, {"type": "callback", "callback_id": cb_id, "ok": True, "result": "yes"}, T0, random.Random(1))
    text, rows = _stored(st, r)
    assert [(i_, n) for i_, n, _ in rows] == [("cb", 31)]
    table.update({i_: (n, b) for i_, n, b in rows})
    back = durable.DurableProgram.restore(text, [b for _, (n, b) in sorted(table.items(), key=lambda kv: kv[1][0])])
    assert back == st


def test_a_state_stored_whole_by_an_older_node_is_read_and_written_out_in_full():
    import json

    st, out = fresh()
    old_text = json.dumps(st)  # the row of a node from before operations had rows of their own
    back = durable.DurableProgram.restore(old_text, [])
    tok = invoke_cmd(out)["payload"]["CheckpointToken"]
    r = checkpoint(back, tok, {"Id": "1", "Type": "STEP", "Action": "START"})
    text, rows = durable.DurableProgram.persist(back, r)
    assert [i for i, _, _ in rows] == [KEY, "1"] and "~all" not in text and '"ops"' not in text
