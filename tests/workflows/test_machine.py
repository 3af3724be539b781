"""The interpreter, driven as the engine drives it (tests/workflows/simulate.py): data flow, every state type,
Retry and Catch, timeouts, task tokens, Parallel, Map, and the history events."""

import json

import pytest

from polyfn.workflows import machine

from .simulate import T0, Sim, TaskError, run

END = {"Type": "Succeed"}


def chain(*states, **extra):
    """A machine of `states` (name, body) in order, each but the last going to the next."""
    out = {}
    for i, (name, body) in enumerate(states):
        body = dict(body)
        if body["Type"] not in ("Succeed", "Fail", "Choice") and "Next" not in body and "End" not in body:
            if i + 1 < len(states):
                body["Next"] = states[i + 1][0]
            else:
                body["End"] = True
        out[name] = body
    return {"StartAt": states[0][0], "States": out, **extra}


# -- data flow ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "value", "output"), [
    ({"Type": "Pass"}, {"a": 1}, {"a": 1}),
    ({"Type": "Pass", "Result": {"r": 1}}, {"a": 1}, {"r": 1}),
    ({"Type": "Pass", "Result": "x", "ResultPath": "$.res"}, {"a": 1}, {"a": 1, "res": "x"}),
    ({"Type": "Pass", "Result": "x", "ResultPath": None}, {"a": 1}, {"a": 1}),
    ({"Type": "Pass", "InputPath": "$.a"}, {"a": {"b": 2}}, {"b": 2}),
    ({"Type": "Pass", "InputPath": None}, {"a": 1}, {}),
    ({"Type": "Pass", "OutputPath": "$.a.b"}, {"a": {"b": 2}}, 2),
    ({"Type": "Pass", "OutputPath": None}, {"a": 1}, {}),
    ({"Type": "Pass", "Parameters": {"x.$": "$.a", "k": "v", "id.$": "$$.Execution.Name"}}, {"a": 1},
     {"x": 1, "k": "v", "id": "run"}),
    ({"Type": "Pass", "InputPath": "$.in", "Parameters": {"sum.$": "States.MathAdd($.x, $.y)"}, "ResultPath": "$.out",
      "OutputPath": "$.out"}, {"in": {"x": 2, "y": 3}}, {"sum": 5}),
    ({"Type": "Pass", "Parameters": {"state.$": "$$.State.Name", "sm.$": "$$.StateMachine.Name"}}, {},
     {"state": "S", "sm": "sm"}),
])
def test_pass_data_flow(state, value, output):
    sim = run(chain(("S", state)), value)
    assert sim.state["status"] == "SUCCEEDED" and sim.state["output"] == output


def test_task_data_flow_result_selector_result_path_output_path():
    def fn(payload):
        return {"greeting": f"hi {payload['who']}", "noise": [1, 2, 3]}

    sim = run(chain(("T", {"Type": "Task", "Resource": "greet", "InputPath": "$.user", "Parameters": {"who.$": "$.name"},
                           "ResultSelector": {"text.$": "$.greeting"}, "ResultPath": "$.result", "OutputPath": "$.result"})),
              {"user": {"name": "Ann"}}, {"greet": fn})
    assert sim.invocations == [("greet", {"who": "Ann"})]
    assert sim.state["output"] == {"text": "hi Ann"}


def test_lambda_invoke_integration_payload_and_output_shape():
    sim = run(chain(("T", {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                           "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:double",
                                          "Payload": {"n.$": "$.n"}},
                           "ResultSelector": {"v.$": "$.Payload", "code.$": "$.StatusCode"}})),
              {"n": 21}, {"double": lambda p: p["n"] * 2})
    assert sim.state["output"] == {"v": 42, "code": 200}
    sched = next(e for e in sim.events if e["type"] == "TaskScheduled")["taskScheduledEventDetails"]
    assert sched["resourceType"] == "lambda" and sched["resource"] == "invoke"
    assert json.loads(sched["parameters"])["Payload"] == {"n": 21}


def test_runtime_error_in_input_path_fails_the_execution_even_with_catch_all():
    sim = run(chain(("T", {"Type": "Task", "Resource": "f", "InputPath": "$.missing",
                           "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "Next": "Done"}),
                    ("Caught", END), ("Done", END)), {}, {"f": lambda p: p})
    assert sim.state["status"] == "FAILED" and sim.state["error"] == "States.Runtime"
    assert sim.invocations == []


def test_result_path_match_failure_can_be_caught():
    sim = run(chain(("T", {"Type": "Task", "Resource": "f", "ResultPath": "$.s.x",
                           "Catch": [{"ErrorEquals": ["States.ResultPathMatchFailure"], "Next": "Caught"}], "Next": "Done"}),
                    ("Caught", END), ("Done", END)), {"s": "text"}, {"f": lambda p: 1})
    assert sim.state["status"] == "SUCCEEDED"
    assert sim.state["output"]["Error"] == "States.ResultPathMatchFailure"


# -- Choice, Wait, Succeed, Fail ------------------------------------------------------------------------

CHOOSE = {"StartAt": "C", "States": {
    "C": {"Type": "Choice", "Choices": [
        {"Variable": "$.n", "NumericLessThan": 0, "Next": "Neg"},
        {"And": [{"Variable": "$.n", "NumericGreaterThanEquals": 0}, {"Variable": "$.n", "NumericLessThan": 10}],
         "Next": "Small"}], "Default": "Big"},
    "Neg": {"Type": "Pass", "Result": "neg", "End": True},
    "Small": {"Type": "Pass", "Result": "small", "End": True},
    "Big": {"Type": "Pass", "Result": "big", "End": True}}}


@pytest.mark.parametrize(("n", "expected"), [(-3, "neg"), (0, "small"), (9.5, "small"), (10, "big")])
def test_choice_picks_the_first_matching_rule_or_default(n, expected):
    assert run(CHOOSE, {"n": n}).state["output"] == expected


def test_choice_without_match_at_runtime_fails_with_no_choice_matched():
    # exhaustive by the validator's reckoning (IsPresent true/false), but a rule errors... use a Parallel to catch
    defn = chain(("P", {"Type": "Parallel", "Branches": [{"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "X"},
                                            {"Variable": "$.x", "IsPresent": False, "Next": "X"}]},
        "X": {"Type": "Fail", "Error": "Custom.Err", "Cause": "from the branch"}}}],
        "Catch": [{"ErrorEquals": ["Custom.Err"], "Next": "Caught"}], "Next": "Done"}),
        ("Caught", END), ("Done", END))
    sim = run(defn, {})
    assert sim.state["status"] == "SUCCEEDED"
    assert sim.state["output"] == {"Error": "Custom.Err", "Cause": "from the branch"}


@pytest.mark.parametrize(("wait", "value", "waited"), [
    ({"Seconds": 30}, {}, 30),
    ({"SecondsPath": "$.s"}, {"s": 12}, 12),
    ({"Timestamp": machine.iso(T0 + 3600)}, {}, 3600),
    ({"TimestampPath": "$.at"}, {"at": machine.iso(T0 + 90)}, 90),
    ({"Timestamp": "2001-01-01T00:00:00Z"}, {}, 0),  # in the past: at once
    ({"Seconds": 0}, {}, 0),
])
def test_wait(wait, value, waited):
    sim = run(chain(("W", {"Type": "Wait", **wait})), value)
    assert sim.state["status"] == "SUCCEEDED" and sim.state["output"] == value
    assert sim.now - T0 == pytest.approx(waited, abs=0.01)
    assert sim.types()[1:3] == ["WaitStateEntered", "WaitStateExited"]


@pytest.mark.parametrize("value", [{"s": -1}, {"s": "soon"}, {}])
def test_wait_seconds_path_needs_a_non_negative_integer(value):
    sim = run(chain(("W", {"Type": "Wait", "SecondsPath": "$.s"})), value)
    assert sim.state["status"] == "FAILED" and sim.state["error"] == "States.Runtime"


def test_fail_state_with_paths():
    sim = run(chain(("F", {"Type": "Fail", "ErrorPath": "$.code", "CausePath": "States.Format('bad {}', $.id)"})),
              {"code": "E42", "id": 7})
    assert (sim.state["status"], sim.state["error"], sim.state["cause"]) == ("FAILED", "E42", "bad 7")
    assert sim.types() == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]


def test_succeed_state_ends_a_branch_early():
    sim = run(chain(("A", {"Type": "Pass", "Result": 1}), ("S", END)), {})
    assert sim.types() == ["ExecutionStarted", "PassStateEntered", "PassStateExited", "SucceedStateEntered",
                           "SucceedStateExited", "ExecutionSucceeded"]


# -- Retry and Catch -------------------------------------------------------------------------------------

def flaky(failures, error="Boom"):
    calls = []

    def fn(payload):
        calls.append(payload)
        if len(calls) <= failures:
            raise TaskError(error, f"failure {len(calls)}")
        return {"ok": len(calls)}

    return fn, calls


@pytest.mark.parametrize(("retrier", "failures", "status", "delays"), [
    ({"ErrorEquals": ["Boom"]}, 2, "SUCCEEDED", [1, 2]),  # defaults: 1 s, ×2, 3 attempts
    ({"ErrorEquals": ["Boom"]}, 4, "FAILED", [1, 2, 4]),
    ({"ErrorEquals": ["Boom"], "IntervalSeconds": 3, "BackoffRate": 1.5, "MaxAttempts": 4}, 4, "SUCCEEDED",
     [3, 4.5, 6.75, 10.125]),
    ({"ErrorEquals": ["Boom"], "IntervalSeconds": 10, "MaxDelaySeconds": 15, "MaxAttempts": 3}, 3, "SUCCEEDED",
     [10, 15, 15]),
    ({"ErrorEquals": ["Boom"], "MaxAttempts": 0}, 1, "FAILED", []),
    ({"ErrorEquals": ["Other"]}, 1, "FAILED", []),
    ({"ErrorEquals": ["States.TaskFailed"]}, 1, "SUCCEEDED", [1]),
    ({"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2}, 1, "SUCCEEDED", [2]),
])
def test_retry_backoff(retrier, failures, status, delays):
    fn, _calls = flaky(failures)
    sim = Sim(chain(("T", {"Type": "Task", "Resource": "f", "Retry": [retrier]})), {"f": fn})
    t0 = sim.now
    times = []
    sim.start({})
    while sim.state["status"] == "RUNNING":
        sim.run_pending()
        if sim.timers:
            tid, at = min(sim.timers.items(), key=lambda kv: kv[1])
            del sim.timers[tid]
            times.append(at - sim.now)
            sim.now = at
            sim.apply({"type": "timer", "id": tid})
    assert sim.state["status"] == status
    assert times == pytest.approx(delays)
    assert sim.now - t0 == pytest.approx(sum(delays))


def test_full_jitter_stays_below_the_backoff_and_varies():
    got = []
    for seed in range(20):
        fn, _ = flaky(1)
        sim = Sim(chain(("T", {"Type": "Task", "Resource": "f", "Retry": [
            {"ErrorEquals": ["Boom"], "IntervalSeconds": 8, "JitterStrategy": "FULL"}]})), {"f": fn}, seed=seed)
        sim.start({})
        sim.run_pending()
        (at,) = sim.timers.values()
        got.append(at - sim.now)
    assert all(0 <= d <= 8 for d in got) and len(set(got)) > 10


def test_retry_count_is_in_the_context_object():
    fn, calls = flaky(2)
    run(chain(("T", {"Type": "Task", "Resource": "f", "Parameters": {"n.$": "$$.State.RetryCount"},
                     "Retry": [{"ErrorEquals": ["Boom"]}]})), {}, {"f": fn})
    assert [c["n"] for c in calls] == [0, 1, 2]


def test_the_first_matching_retrier_decides_even_when_exhausted():
    fn, calls = flaky(5)
    sim = run(chain(("T", {"Type": "Task", "Resource": "f", "Retry": [
        {"ErrorEquals": ["Boom"], "MaxAttempts": 1}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]})), {}, {"f": fn})
    assert sim.state["status"] == "FAILED" and len(calls) == 2


def test_catch_result_path_keeps_the_input():
    fn, _ = flaky(9)
    sim = run(chain(("T", {"Type": "Task", "Resource": "f", "Next": "Done",
                           "Catch": [{"ErrorEquals": ["Nope"], "Next": "Wrong"},
                                     {"ErrorEquals": ["Boom"], "ResultPath": "$.error", "Next": "Handle"}]}),
                    ("Wrong", END), ("Handle", {"Type": "Pass", "End": True}), ("Done", END)), {"keep": 1}, {"f": fn})
    assert sim.state["output"] == {"keep": 1, "error": {"Error": "Boom", "Cause": "failure 1"}}
    assert "Wrong" not in [e.get("stateEnteredEventDetails", {}).get("name") for e in sim.events]


def test_task_failed_matches_everything_but_timeout():
    from polyfn.workflows.errors import matches

    assert matches(["States.TaskFailed"], "Lambda.Unknown")
    assert matches(["States.TaskFailed"], "States.HeartbeatTimeout")
    assert not matches(["States.TaskFailed"], "States.Timeout")
    assert not matches(["States.ALL"], "States.Runtime")
    assert not matches(["States.ALL"], "States.DataLimitExceeded")


# -- timeouts, heartbeats, task tokens ---------------------------------------------------------------------

def test_task_timeout_is_states_timeout():
    sim = Sim(chain(("T", {"Type": "Task", "Resource": "slow", "TimeoutSeconds": 5,
                           "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Late"}], "Next": "Done"}),
                    ("Late", END), ("Done", END)))
    sim.start({})
    sim.pending.clear()  # the function never answers
    sim.finish()
    assert sim.state["output"]["Error"] == "States.Timeout"
    assert "LambdaFunctionTimedOut" in sim.types()
    token = next(e for e in sim.events if e["type"] == "LambdaFunctionScheduled")
    assert token["lambdaFunctionScheduledEventDetails"]["timeoutInSeconds"] == 5


def test_a_late_result_after_a_timeout_is_not_accepted():
    sim = Sim(chain(("T", {"Type": "Task", "Resource": "slow", "TimeoutSeconds": 5})))
    sim.start({})
    (cmd,) = sim.pending
    sim.pending.clear()
    sim.finish()
    assert sim.state["error"] == "States.Timeout"
    out = sim.apply({"type": "task_result", "token": cmd["token"], "ok": True, "output": 1})
    assert out.accepted is False and out.events == []


WAIT_FOR_TOKEN = chain(("Ask", {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                                "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token", "q.$": "$.q"}},
                                "HeartbeatSeconds": 60, "TimeoutSeconds": 3600, "ResultPath": "$.answer"}))


def test_wait_for_task_token_success():
    sim = Sim(WAIT_FOR_TOKEN, {"notify": lambda p: "sent"})
    sim.start({"q": "ok?"})
    sim.run_pending()
    assert sim.state["status"] == "RUNNING"
    (held,) = sim.held
    token = held["payload"]["Payload"]["token"]
    assert token == held["token"] and token.startswith("e1.")
    assert sim.apply({"type": "heartbeat", "token": token}).accepted
    sim.now += 30
    assert sim.apply({"type": "task_callback", "token": token, "ok": True, "output": {"yes": True}}).accepted
    assert sim.state["output"] == {"q": "ok?", "answer": {"yes": True}}
    assert [t for t in sim.types() if t.startswith("Task")] == ["TaskStateEntered", "TaskScheduled", "TaskStarted",
                                                                 "TaskSubmitted", "TaskSucceeded", "TaskStateExited"]
    assert sim.timers == {}  # the heartbeat and timeout timers were cancelled


def test_wait_for_task_token_failure_and_unknown_tokens():
    sim = Sim(WAIT_FOR_TOKEN, {"notify": lambda p: "sent"})
    sim.start({"q": "?"})
    sim.run_pending()
    token = sim.held[0]["token"]
    assert not sim.apply({"type": "task_callback", "token": token + "x", "ok": True, "output": 1}).accepted
    sim.apply({"type": "task_callback", "token": token, "ok": False, "error": "Rejected", "cause": "no"})
    assert (sim.state["status"], sim.state["error"]) == ("FAILED", "Rejected")
    assert not sim.apply({"type": "task_callback", "token": token, "ok": True, "output": 1}).accepted


def test_missed_heartbeat_is_heartbeat_timeout():
    sim = Sim(WAIT_FOR_TOKEN, {"notify": lambda p: "sent"})
    sim.start({"q": "?"})
    sim.finish()
    assert sim.state["error"] == "States.HeartbeatTimeout" and sim.now == T0 + 60


def test_a_callback_for_a_request_response_task_is_refused():
    sim = Sim(chain(("T", {"Type": "Task", "Resource": "f"})))
    sim.start({})
    token = sim.pending[0]["token"]
    assert not sim.apply({"type": "task_callback", "token": token, "ok": True, "output": 1}).accepted
    assert not sim.apply({"type": "heartbeat", "token": token}).accepted


def test_execution_timeout():
    sim = Sim(chain(("W", {"Type": "Wait", "Seconds": 100}), TimeoutSeconds=10))
    sim.start({})
    sim.finish()
    assert (sim.state["status"], sim.state["error"]) == ("TIMED_OUT", "States.Timeout")
    assert sim.types()[-2:] == ["WaitStateAborted", "ExecutionTimedOut"]


def test_stop_aborts_and_then_refuses_everything():
    sim = Sim(chain(("T", {"Type": "Task", "Resource": "f"})))
    sim.start({})
    token = sim.pending[0]["token"]
    sim.apply({"type": "stop", "error": "user", "cause": "stopped by a test"})
    assert sim.state["status"] == "ABORTED"
    assert sim.types()[-2:] == ["TaskStateAborted", "ExecutionAborted"]
    assert not sim.apply({"type": "task_result", "token": token, "ok": True, "output": 1}).accepted


# -- Parallel and Map ---------------------------------------------------------------------------------------

def test_parallel_outputs_in_branch_order():
    branches = [{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": s, "Next": "R"},
                                            "R": {"Type": "Pass", "Result": s, "End": True}}} for s in (30, 10, 20)]
    sim = run(chain(("P", {"Type": "Parallel", "Branches": branches, "ResultSelector": {"all.$": "$"}})), {})
    assert sim.state["output"] == {"all": [30, 10, 20]}
    assert sim.now - T0 == 30


def test_a_failed_branch_aborts_the_others_and_fails_the_parallel():
    branches = [{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 100, "End": True}}},
                {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "BranchError", "Cause": "no"}}}]
    sim = run(chain(("P", {"Type": "Parallel", "Branches": branches,
                           "Catch": [{"ErrorEquals": ["BranchError"], "Next": "C"}], "Next": "Done"}),
                    ("C", END), ("Done", END)), {})
    assert sim.state["output"] == {"Error": "BranchError", "Cause": "no"}
    assert sim.now == T0  # the waiting branch was aborted, its timer cancelled
    assert "WaitStateAborted" in sim.types() and "ParallelStateFailed" in sim.types()


def test_parallel_retry_runs_every_branch_again():
    fn, calls = flaky(1)
    branches = [{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "f", "End": True}}},
                {"StartAt": "X", "States": {"X": {"Type": "Pass", "Result": "x", "End": True}}}]
    sim = run(chain(("P", {"Type": "Parallel", "Branches": branches, "Retry": [{"ErrorEquals": ["Boom"]}]})), {}, {"f": fn})
    assert sim.state["output"] == [{"ok": 2}, "x"] and len(calls) == 2


MAP = {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
       "ItemSelector": {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "k.$": "$.k"},
       "ItemProcessor": {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": "work", "End": True}}}}


def test_map_with_item_selector_and_concurrency_limit():
    running = []
    peak = []

    def work(p):
        running.append(p)
        peak.append(len(sim.pending) + 1)
        return p["value"] * 10 + p["k"]

    sim = Sim(chain(("M", MAP)), {"work": work})
    sim.start({"items": [1, 2, 3, 4, 5], "k": 1})
    assert len(sim.pending) == 2  # MaxConcurrency
    sim.finish()
    assert sim.state["output"] == [11, 21, 31, 41, 51]
    assert max(peak) <= 2
    assert [e["mapIterationStartedEventDetails"]["index"] for e in sim.events if e["type"] == "MapIterationStarted"] == [0, 1, 2, 3, 4]
    started = next(e for e in sim.events if e["type"] == "MapStateStarted")
    assert started["mapStateStartedEventDetails"] == {"length": 5}


def test_map_of_nothing_and_unlimited_concurrency():
    assert run(chain(("M", MAP)), {"items": [], "k": 0}).state["output"] == []
    sim = Sim(chain(("M", {**MAP, "MaxConcurrency": 0})), {"work": lambda p: p["value"]})
    sim.start({"items": list(range(50)), "k": 0})
    assert len(sim.pending) == 50
    sim.finish()
    assert sim.state["output"] == list(range(50))


def test_map_items_path_must_be_an_array():
    sim = run(chain(("M", MAP)), {"items": {"not": "a list"}, "k": 0}, {"work": lambda p: p})
    assert sim.state["error"] == "States.Runtime" and "must select an array" in sim.state["cause"]


@pytest.mark.parametrize(("tolerance", "fails", "status"), [
    ({}, {3}, "FAILED"),
    ({"ToleratedFailureCount": 1}, {3}, "SUCCEEDED"),
    ({"ToleratedFailureCount": 1}, {1, 3}, "FAILED"),
    ({"ToleratedFailurePercentage": 50}, {0, 1}, "SUCCEEDED"),
    ({"ToleratedFailurePercentage": 50}, {0, 1, 2}, "FAILED"),
])
def test_map_tolerated_failures(tolerance, fails, status):
    def work(p):
        if p["index"] in fails:
            raise TaskError("ItemError", f"item {p['index']}")
        return p["index"]

    sim = run(chain(("M", {**MAP, **tolerance})), {"items": [0, 1, 2, 3], "k": 0}, {"work": work})
    assert sim.state["status"] == status
    if status == "SUCCEEDED":
        assert [r if isinstance(r, int) else r["Error"] for r in sim.state["output"]] == \
            ["ItemError" if i in fails else i for i in range(4)]
    else:
        assert sim.state["error"] == ("States.ExceedToleratedFailureThreshold" if tolerance else "ItemError")


def test_nested_map_in_parallel_in_map():
    inner = {"Type": "Parallel", "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "work", "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Map", "ItemsPath": "$.sub", "ItemProcessor": {
            "StartAt": "C", "States": {"C": {"Type": "Pass", "End": True}}}, "End": True}}}], "End": True}
    sim = run(chain(("M", {"Type": "Map", "ItemsPath": "$", "ItemProcessor": {"StartAt": "P", "States": {"P": inner}}})),
              [{"v": 1, "sub": [1, 2]}, {"v": 2, "sub": []}], {"work": lambda p: p["v"] * 100})
    assert sim.state["output"] == [[100, [1, 2]], [200, []]]


# -- limits and history ---------------------------------------------------------------------------------

def test_a_pass_loop_is_stopped():
    sim = run({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}}, {})
    assert sim.state["status"] == "FAILED" and sim.state["error"] == "States.Runtime"


def test_history_ids_chain_and_the_final_event_is_last():
    sim = run(chain(("A", {"Type": "Pass"}), ("T", {"Type": "Task", "Resource": "f"})), {"x": 1}, {"f": lambda p: p})
    ids = [e["id"] for e in sim.events]
    assert ids == list(range(1, len(ids) + 1))
    assert all(e["previousEventId"] == e["id"] - 1 for e in sim.events[1:])
    start = sim.events[0]["executionStartedEventDetails"]
    assert json.loads(start["input"]) == {"x": 1} and start["roleArn"] == "arn:role"
    assert sim.events[-1]["type"] == "ExecutionSucceeded"
    assert json.loads(sim.events[-1]["executionSucceededEventDetails"]["output"]) == {"x": 1}


def test_a_100_state_pass_chain_runs_in_one_step():
    sim = Sim(chain(*[(f"S{i}", {"Type": "Pass", "Parameters": {"n.$": f"States.MathAdd($.n, {i})"}}) for i in range(100)]))
    sim.start({"n": 0})
    assert sim.state["output"] == {"n": 4950} and len(sim.events) == 202


def test_the_same_inputs_give_the_same_history():
    def once():
        fn, _ = flaky(1)
        sim = run(chain(("T", {"Type": "Task", "Resource": "f", "Parameters": {"id.$": "States.UUID()"},
                               "Retry": [{"ErrorEquals": ["Boom"], "JitterStrategy": "FULL"}]})), {}, {"f": fn})
        return sim.events

    assert once() == once()


# -- OpenWhisk compositions (workflows/sequences.py) ----------------------------------------------------------

def test_an_openwhisk_sequence_chains_results():
    from polyfn.workflows.sequences import sequence_definition

    sim = run(sequence_definition(["split", "count"]), {"text": "a b c"},
              {"split": lambda p: {"words": p["text"].split()}, "count": lambda p: {"n": len(p["words"])}})
    assert sim.state["output"] == {"n": 3}


def test_a_conductor_loops_until_it_returns_no_action():
    from polyfn.workflows.sequences import conductor_definition

    def conductor(p):  # double n until it passes 20, keeping a step count in the state
        steps = p.get("steps", 0)
        if p["n"] > 20:
            return {"params": {"n": p["n"], "steps": steps}}
        return {"action": "/_/double", "params": {"n": p["n"]}, "state": {"steps": steps + 1}}

    sim = run(conductor_definition("conduct"), {"n": 3}, {"conduct": conductor, "double": lambda p: {"n": p["n"] * 2}})
    assert sim.state["status"] == "SUCCEEDED" and sim.state["output"] == {"n": 24, "steps": 3}


def test_a_map_that_fails_midway_and_is_caught_stops_its_running_iterations():
    # the third item is too short for its ItemSelector (States.IntrinsicFailure, catchable) while the second
    # iteration still waits: the Map is caught and the execution goes on; that iteration must not live on
    defn = chain(("M", {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                        "ItemSelector": {"v.$": "States.ArrayGetItem($$.Map.Item.Value, 1)"},
                        "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.v",
                                                                           "End": True}}},
                        "Catch": [{"ErrorEquals": ["States.IntrinsicFailure"], "Next": "Later"}], "Next": "Done"}),
                 ("Later", {"Type": "Wait", "Seconds": 100, "Next": "Caught"}),
                 ("Caught", {"Type": "Pass", "Result": "caught", "End": True}), ("Done", END))
    sim = run(defn, {"items": [[0, 5], [0, 50], [0]]})
    assert (sim.state["status"], sim.state["output"]) == ("SUCCEEDED", "caught")
    assert sim.now - T0 == 105  # the second iteration's 50 s wait was cancelled with the Map
