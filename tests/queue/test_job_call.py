"""The async queue's job carries a call: what is queued is what runs (each attempt with its own headers)."""

from __future__ import annotations

from polyfn.call import Call
from polyfn.queue.builtin import Job


def test_a_job_runs_the_call_it_queued() -> None:
    call = Call("fn", "http", "http", "PUT", "/a/b", "x=1", [("content-type", "text/plain"), ("x-a", "1")], b"hi",
                "text/plain")
    job = Job.of(call, "j1", "http://cb.example/", 100.0)
    assert (job.id, job.enqueued_at, job.not_before, job.callback_url) == ("j1", 100.0, 100.0, "http://cb.example/")
    attempt = job.call([*job.headers, ("x-polyfn-attempt", "2")], "t" * 32, "p" * 16)
    assert (attempt.function, attempt.kind, attempt.trigger, attempt.method, attempt.path, attempt.query,
            attempt.body, attempt.content_type) == ("fn", "http", "http", "PUT", "/a/b", "x=1", b"hi", "text/plain")
    assert attempt.headers[-1] == ("x-polyfn-attempt", "2") and attempt.headers[:2] == call.headers
    assert attempt.activation_id == "j1"  # every attempt is the same activation: the function's idempotency key
    assert (attempt.trace_id, attempt.parent_id) == ("t" * 32, "p" * 16)
    frame = attempt.frame("j1", 200.0, attempt.trace_id)
    assert (frame.activation_id, frame.kind, frame.deadline, frame.method, frame.path, frame.body) == (
        "j1", "http", 200.0, "PUT", "/a/b", b"hi")
