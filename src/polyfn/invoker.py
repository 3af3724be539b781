"""The one code path every invocation takes, whatever its ingress (gateway, invoke API, later triggers).

admission (function exists, payload size) → an instance from the pool (maybe a cold start, maybe a wait
in the bounded queue) → send the `Invoke` frame → wait for the `Result` under the function's deadline →
map failures to clear platform errors → record the activation. The caller gets an `Outcome` (outcome.py):
status, headers (ASGI byte pairs), body, and the activation's id and cold flag. A function that streams its
response is followed from its head on by `StreamedCalls` (streamed_calls.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any

from polyfn.call import Call
from polyfn.config import Settings
from polyfn.headers import safe_headers, strip_identity_headers
from polyfn.instances.instance import Instance, InstanceGone, NotStarted
from polyfn.model import Activation, LogLine
from polyfn.observe.logbudget import LogBudget
from polyfn.observe.metrics import Metrics
from polyfn.observe.recorder import ActivationRecorder
from polyfn.outcome import Outcome, platform_error  # (what the invoker answers; the faces import both here)
from polyfn.protocol import Invoke, Result
from polyfn.scheduler import shed
from polyfn.scheduler.deadlines import Deadlines
from polyfn.scheduler.pool import PoolClosed, StartFailed, Throttled
from polyfn.scheduler.registry import Active, FunctionRegistry
from polyfn.streamed_calls import StreamedCalls
from polyfn.streaming import ResponseStream
from polyfn.tenancy import local

_random_bits = random.getrandbits  # seeded from os.urandom at import; the server never forks
_time_ns = time.time_ns
_to_bytes = int.to_bytes  # (the unbound method with positional arguments: big-endian is its default since 3.11)
log = logging.getLogger("polyfn.invoker")



def new_activation_id() -> str:
    """32 hex digits: nanosecond time then 64 random bits. Time-ordered ids keep the activations primary-key
    index append-mostly (random uuid4 ids cost ~4x the SQLite insert CPU) and sort by start; the random
    half keeps them unique across nodes."""
    return _to_bytes((_time_ns() << 64) | _random_bits(64), 16).hex()  # (~4x an f-string's speed, 1.5x the method's)


class FunctionTimeout(Exception):
    pass


class FunctionCancelled(Exception):
    """`DELETE /v1/activations/ID` (`polyfn cancel`) stopped the invocation while it ran."""


def _activation(call: Call, revision: int, memory: int) -> Activation:
    """The record of a call that was admitted, as it starts (its id given by the queue or a trigger, or new)."""
    aid = call.activation_id or new_activation_id()
    return Activation(id=aid, function=call.function, revision=revision, trigger=call.trigger, start=time.time(),
                      trace_id=call.trace_id or aid, parent_id=call.parent_id, memory_mb=memory,
                      req_bytes=len(call.body))


def _again(e: Exception, admitted: Active | None) -> bool:
    """Is a call that ended without a result run once more, on another instance? When its instance ended before
    it started (`NotStarted`: none of the function's code ran), unless this was its second try already."""
    return type(e) is NotStarted and admitted is None


def _on_deadline(inst: Instance, fut: asyncio.Future[Result], timeout: float) -> None:
    """The call's time is up: its instance is stopped. (A call written behind another on an ordered instance has a
    deadline no earlier than the one ahead's, which is stopped for it first, its calls behind tried elsewhere:
    `Instance.kill`. Only the first streamed response of a function, which runs under its own limits, can outlast
    the deadline of a call behind it: then both end. scheduler/pool.py `_behind`.)"""
    if not fut.done():
        fut.set_exception(FunctionTimeout())
        inst.kill(f"timed out after {timeout:g} s")


class Invoker:
    def __init__(self, settings: Settings, registry: FunctionRegistry, recorder: ActivationRecorder,
                 metrics: Metrics | None = None, limiter: Any = None, localise: Any = None):
        self.settings = settings
        self.metrics = metrics
        self.lines_max = settings.log_lines_per_activation
        self.log_budget = LogBudget(settings.log_bytes_per_activation, settings.log_bytes_per_second)
        self._refusals: dict[tuple[str, str], Outcome] = {}  # (function, reason) → its 429, built once
        self.limiter: Any = limiter  # polyfn.auth.ratelimit.Limiter, for functions with a rate_limit
        self.registry = registry
        self.recorder = recorder
        self.max_payload = settings.max_payload
        self.truncate = settings.result_truncate
        self.accepting = True
        self.deadlines = Deadlines()
        # activation id → (instance, result future) of every invocation running on an instance now: what
        # `cancel` stops (a sync call, or an attempt of an async one)
        self.running: dict[str, tuple[Instance, asyncio.Future[Result]]] = {}
        self.localise: Any = localise  # Deployer.localise, for pinned revisions other nodes deployed (cluster sync)
        self.quota: Any = None  # (function) -> Throttled | None: its namespace's invocation rate (quotas.py)
        #: calls whose function streams its response (streamed_calls.py): their limits, cancels and records
        self.streamed = StreamedCalls(settings, self.deadlines, self.running, self._bounded, self._finish)

    async def admit(self, call: Call) -> Active | Outcome:
        """The one admission of a call: the node accepts calls, the function exists (and the pinned revision can
        be served here), the payload is within the limit, an app-only function has its verified user, the
        function is within its rate limit. The function's registry entry, or the refusal to answer with."""
        active = self._admitted(call)
        if active is not None:
            return active
        revision = call.revision
        assert revision is not None and self.localise is not None
        try:  # a cluster: the version may have been deployed by another node, with its paths
            call.revision = await self.localise(revision)
        except Exception as e:
            return platform_error(503, "code_unavailable", f"{revision.key} cannot be served by this "
                                  f"node: {e}", headers=[(b"retry-after", b"5")])
        return self._admitted(call, localised=True)  # type: ignore[return-value]

    def _admitted(self, call: Call, localised: bool = False) -> Active | Outcome | None:
        """`admit` without a coroutine (the hot path): None when the call pins a revision this node has to
        localise first (a cluster's, deployed by another node), which only `admit` awaits."""
        if not self.accepting:
            return platform_error(503, "shutting_down", "the server is shutting down",
                                  headers=[(b"retry-after", b"1")])
        name = call.function
        active = call.active if call.active is not None else self.registry.get(name)
        if active is None:
            # (the name as its namespace's callers know it: a held name says how the node stores it)
            return platform_error(404, "function_not_found", f"function {local(name)!r} does not exist")
        revision = call.revision
        if revision is not None and revision.number != active.revision.number:
            if (not localised and (revision.function, revision.number) not in self.registry.pinned_pools
                    and self.localise is not None):
                return None
            active = self.registry.pinned(revision)
        if self.quota is not None and (refused := self.quota(name)) is not None:  # its namespace's rate (quotas.py)
            return self._refused(name, refused)
        if len(call.body) > self.max_payload:
            return platform_error(413, "payload_too_large",
                                  f"the payload is {len(call.body)} bytes; the limit is {self.max_payload}")
        spec = active.revision.spec
        if spec.auth == "app" and call.identity is None and call.trigger == "http":  # every HTTP ingress
            return platform_error(401, "app_token_required", f"function {name!r} is for an app's signed-in users: "
                                  f"call it as POST /app/ENV/call/{name} with the user's token "
                                  "(wx.cloud.callFunction does)")
        if spec.rate_limit > 0 and self.limiter is not None:
            wait = self.limiter.check("fn:" + name, spec.rate_limit, spec.rate_limit, time.monotonic())
            if wait:
                return platform_error(429, "rate_limited",
                                      f"function {name!r} is over its rate limit ({spec.rate_limit:g}/s)",
                                      headers=[(b"retry-after", str(wait).encode())])
        return active

    async def call(self, call: Call, admitted: Active | None = None) -> Outcome:
        """Run one call: admission, an instance from the pool (maybe a cold start, maybe a wait in the bounded
        queue), the `Invoke` frame, the `Result` under the function's deadline, the activation record. A call
        whose instance ended before it started (`NotStarted`: none of the function's code ran) is run once more,
        on another instance, without a second admission (`admitted`: its registry entry)."""
        active = self._admitted(call) if admitted is None else admitted
        if active is None:
            active = await self.admit(call)
        if type(active) is Outcome:
            return active
        spec = active.revision.spec
        pool = active.pool
        t0 = time.perf_counter()
        act = _activation(call, active.revision.number, spec.memory)
        try:  # a free instance, or a wait in the pool's queue (maybe for a cold start)
            inst = pool.try_acquire() or await pool.acquire(spec.timeout)
        except (Throttled, StartFailed, PoolClosed) as e:
            return self._unserved(call, act, t0, e)
        inv = self._frame(call, spec, act, inst, t0)
        try:
            fut = inst.invoke(inv)
        except InstanceGone:
            pool.release(inst)
            return await self._crashed(act, t0, inst)
        deadlines = self.deadlines
        deadlines.add(fut, t0 + spec.timeout, _on_deadline, inst, fut, spec.timeout)
        running = self.running
        running[act.id] = (inst, fut)
        streamed = False
        try:
            res = await fut
            if type(res) is ResponseStream:  # the function streams its response (protocol.Head)
                deadlines.discard(fut)
                pool.streamed()
                streamed = True
                return await self._streaming(call, act, t0, inst, pool, res, spec)
        except (FunctionCancelled, FunctionTimeout, InstanceGone) as e:
            deadlines.discard(fut)  # (a timeout's entry is gone already: the sweep took it before it expired)
            if not _again(e, admitted):
                return await self._ended(e, act, t0, inst, inv.id, spec.timeout)
            res = None  # (run again, after the instance is released, below)
        finally:
            if not streamed:  # (a stream's instance is released when the stream ends)
                running.pop(act.id, None)
                pool.release(inst)
        if res is None:
            log.warning("%s: instance %s ended before it started; the call goes to another", call.function, inst.id)
            return await self.call(call, active)
        deadlines.discard(fut)
        pool.answered(res.run_ms)  # (calls written behind others only for short calls: scheduler/behind.py)
        return self._answered(act, t0, inst, res, spec)

    async def _streaming(self, call: Call, act: Activation, t0: float, inst: Instance, pool: Any,
                         stream: ResponseStream, spec: Any) -> Outcome:
        """A function that streams its response, from its head on (streamed_calls.py): relayed as it comes to an
        ingress that asked (`call.stream`), else read whole into the Outcome's body."""
        out = self.streamed.begin(act, t0, inst, pool, stream, spec, call.kind)
        return out if call.stream else await self.streamed.collected(out)

    def _unserved(self, call: Call, act: Activation, t0: float, e: Exception) -> Outcome:
        """The answer to a call the pool gave no instance: shed (no activation record, only counted:
        scheduler/shed.py), the function failed to start (recorded), or its pool was closed (removed)."""
        if type(e) is PoolClosed:
            return platform_error(404, "function_not_found", str(e))
        if isinstance(e, Throttled):  # shed, or a kind of it (NoCapacity)
            if self.metrics is not None:
                self.metrics.shed(call.function, call.trigger, e.reason)
            return self._refused(call.function, e)
        assert type(e) is StartFailed
        act.logs = self._bounded(call.function, [ln if type(ln) is LogLine else LogLine(*ln) for ln in e.logs])
        act.error = e.error
        message = f"the function failed to start: {e.error.get('errorMessage')}"
        extra = {"errorType": e.error.get("errorType"), "stackTrace": e.error.get("stackTrace", [])}
        headers = None
        if e.retry_after:  # remembered: no start was tried for this call (the pool backs off)
            wait = max(1, math.ceil(e.retry_after))
            message += (f" (remembered from a start that failed {e.age:.1f} s ago; the next start is "
                        f"tried in {wait} s)")
            extra["remembered"] = True
            headers = [(b"retry-after", str(wait).encode())]
        return self._finish(act, t0, "init_failed", 502, platform_error(
            502, "function_init_failed", message, extra=extra, headers=headers, activation_id=act.id))

    def _frame(self, call: Call, spec: Any, act: Activation, inst: Instance, t0: float) -> Invoke:
        """The call has its instance: the activation learns the wait and the instance (and whether this is its
        cold start); the `Invoke` frame is made (a CloudEvent shaped for a vendor's flavour on Node.js, the
        caller's identity headers taken out)."""
        act.wait_ms = (time.perf_counter() - t0) * 1000
        act.instance = inst.id
        if not inst.cold_claimed:
            inst.cold_claimed = True
            act.cold = True
            act.init_ms = inst.init_ms
            act.init_info = inst.info
        if call.kind == "cloudevent" and spec.runtime != "python":  # vendor shapes are built here for Node.js
            from polyfn.events.shapes import shape_for_launched_runtime

            shaped = shape_for_launched_runtime(spec.flavor, call.body)
            if shaped is not None:
                call.kind, call.body, call.content_type = "event", shaped, "application/json"
        if call.headers:
            call.headers = strip_identity_headers(call.headers)
        return call.frame(act.id, act.start + spec.timeout, act.trace_id)

    async def _ended(self, e: Exception, act: Activation, t0: float, inst: Instance, inv_id: int,
                     timeout: float) -> Outcome:
        """A call that ended without a result: cancelled, timed out, or its instance died (crash, memory); with
        what it printed before (its streamed lines)."""
        early = inst.printed_so_far(inv_id)
        if early:
            act.logs = self._bounded(act.function, early)
        if type(e) is FunctionCancelled:
            return self._finish(act, t0, "cancelled", 499, platform_error(
                499, "function_cancelled", f"activation {act.id} was cancelled while it ran (its instance was "
                "stopped)", activation_id=act.id))
        if type(e) is FunctionTimeout:
            return self._finish(act, t0, "timeout", 504, platform_error(
                504, "function_timeout", f"the function did not finish within its {timeout:g} s timeout",
                activation_id=act.id))
        return await self._crashed(act, t0, inst)

    def _answered(self, act: Activation, t0: float, inst: Instance, res: Result, spec: Any) -> Outcome:
        """The function's `Result`: its lines, the sandbox's memory peak, its status and headers, its error (a
        500 unless it chose a 4xx/5xx), a body over the payload limit (502)."""
        act.run_ms = res.run_ms
        if res.logs:
            act.logs = self._bounded(act.function, res.logs)  # already LogLine structs (decoded so by the protocol)
            if len(res.logs) > self.lines_max and self.metrics is not None:
                self.metrics.log_floods.inc(act.function)
        if inst.memory is not None:  # the sandbox's peak (read as the record is stored), a child killed for memory
            self.recorder.peak_of(act, inst.memory)
            if res.error is not None and inst.memory.new_kills():
                act.logs = [*act.logs, LogLine(time.time(), "stderr", f"polyfn: a process of this instance was "
                            f"killed for memory (the function's limit is {spec.memory} MB, /tmp included)")]
        status = res.status if type(res.status) is int and 100 <= res.status <= 599 else 502
        out_headers = safe_headers(res.headers) if res.headers else []
        out_headers.append((b"x-polyfn-activation-id", act.id.encode()))
        if act.cold:
            out_headers.append((b"x-polyfn-cold", b"true"))
        if res.error is not None:
            act.error = res.error
            out_headers.append((b"x-polyfn-function-error", b"Unhandled"))
            outcome = Outcome(500 if status < 400 else status, out_headers, res.body, act.id, act.cold)
            return self._finish(act, t0, "error", outcome.status, outcome, res.body)
        if len(res.body) > self.max_payload:
            return self._finish(act, t0, "error", 502, platform_error(
                502, "response_too_large",
                f"the function returned {len(res.body)} bytes; the limit is {self.max_payload}", activation_id=act.id))
        return self._finish(act, t0, "success", status, Outcome(status, out_headers, res.body, act.id, act.cold),
                            res.body)

    def _refused(self, name: str, e: Throttled) -> Outcome:
        """The 429 (503) of a refused call. Under a flood these are most answers: the common ones are built
        once per function and reason."""
        if e.reason not in (shed.QUEUE_FULL, shed.OVERLOADED):
            return platform_error(e.status, e.code, str(e), getattr(e, "extra", None),
                                  headers=[(b"retry-after", str(e.retry_after).encode())])
        key = (name, e.reason)
        out = self._refusals.get(key)
        if out is None:
            if len(self._refusals) > 10_000:
                self._refusals.clear()
            out = self._refusals[key] = platform_error(
                e.status, e.code, f"function {name!r} is at capacity ({e.reason}): retry later",
                headers=[(b"retry-after", str(e.retry_after).encode())])
        return Outcome(out.status, list(out.headers), out.body, error=out.error)

    def cancel(self, activation_id: str) -> bool:
        """Stop a running invocation: its caller gets 499 `function_cancelled` at once and its instance is
        killed (a handler cannot be interrupted safely in place). False when it is not running here (a call
        written behind another on its instance has not started: stopping the instance would stop that one)."""
        if self.streamed.cancel(activation_id):
            return True
        entry = self.running.get(activation_id)
        if entry is None:
            return False
        inst, fut = entry
        if fut.done() or inst.behind(fut):  # (written behind another call: not started, as a call in the queue)
            return False
        fut.set_exception(FunctionCancelled())
        inst.kill(f"activation {activation_id} cancelled")
        return True

    def _bounded(self, name: str, logs: list[LogLine]) -> list[LogLine]:
        """The lines the node keeps (observe/logbudget.py: bytes per activation and per function a second)."""
        if not logs:
            return logs
        kept, dropped = self.log_budget.bound(name, logs, time.monotonic())
        if dropped and self.metrics is not None:
            self.metrics.log_bytes_dropped.inc(name, n=dropped)
        return kept

    async def _crashed(self, act: Activation, t0: float, inst: Instance) -> Outcome:
        """The instance died under us: wait briefly for its exit status so the caller learns why."""
        await inst.wait_exit(0.5)
        reason = inst.describe_exit()
        if inst.oom:
            return self._finish(act, t0, "oom", 502, platform_error(
                502, "function_oom", f"the function ran out of memory: {reason}", activation_id=act.id))
        return self._finish(act, t0, "crashed", 502, platform_error(
            502, "function_crashed", f"the function's instance crashed: {reason}", activation_id=act.id))

    def _finish(self, act: Activation, t0: float, status: str, code: int, outcome: Outcome,
                result: bytes | None = None) -> Outcome:
        act.end = time.time()
        act.duration_ms = (time.perf_counter() - t0) * 1000
        act.status = status
        act.status_code = code
        body = outcome.body if result is None else result
        if body:
            act.result = body[: self.truncate].decode("utf-8", "replace")
            act.resp_bytes = len(body)
        if status != "success" and act.error is None and result is None:
            act.error = outcome.error  # the platform's own error, as typed (never parsed back from the body)
        self.recorder.record(act)
        if self.metrics is not None:
            self.metrics.observe(act)
        return outcome
