"""Log triggers: batches of log lines delivered to a function (`TYPE_LOG_BATCH`; flavors shape it, e.g. a
CloudWatch Logs subscription event with `awslogs.data` for `aws` code).

Options: `stream` (a name lines are POSTed to with `POST /v1/logs/{stream}`, or `fn:NAME` to follow another
function's stdout/stderr), `group` (log group name in the event, default `/polyfn/<stream>`), `batch_size`
(1-10000, default 100), `batch_window` (seconds to gather a fuller batch, default 0).

Lines wait durably in the queue file (the cluster's stream with `queue_url`) until delivered (or
dead-lettered), like topic messages.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from polyfn.events.cloudevent import TYPE_LOG_BATCH, new_event
from polyfn.model import Activation
from polyfn.tenancy import local, namespace_of, owns, qualify
from polyfn.triggers.base import TriggerConfigError, opt_num, opt_str
from polyfn.triggers.delivery import Message
from polyfn.triggers.topic import TopicRunner, check_topic


def validate(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - {"stream", "group", "batch_size", "batch_window"}
    if unknown:
        raise TriggerConfigError(f"unknown log option(s): {', '.join(sorted(unknown))}")
    stream = opt_str(config, "stream", required=True)
    assert stream is not None
    check_topic(stream[3:] if stream.startswith("fn:") else stream)
    return {"stream": stream, "group": opt_str(config, "group", f"/polyfn/{stream}"),
            "batch_size": opt_num(config, "batch_size", 100, 1, 10000, integer=True),
            "batch_window": opt_num(config, "batch_window", 0.0, 0, 300)}


def followed(function: str, stream: str) -> str:
    """The function a trigger of `function` on stream `fn:NAME` follows: NAME of its own namespace."""
    return qualify(namespace_of(function), stream[3:])


def check(function: str, config: dict[str, Any]) -> None:
    if config["stream"] == f"fn:{local(function)}":
        raise TriggerConfigError(f"function {function!r} cannot subscribe to its own logs (each delivery would "
                                 "log again, forever)", code="invalid_trigger")


def topic_of(stream: str) -> str:
    return f"log:{stream}"


class LogRunner(TopicRunner):
    kind = "log"

    def __init__(self, trigger: Any, ctx: Any):
        cfg = dict(trigger.config)
        super().__init__(trigger, ctx)
        self.stream = cfg["stream"]
        self.topic = topic_of(self.stream)
        self.source = "log"
        self.builder = self.build
        self._unfollow: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    def build(self, msgs: list[Message]) -> bytes:
        lines = [{"id": m.id, "timestamp": int(m.sent_at * 1000), "message": m.body.decode("utf-8", "replace")}
                 for m in msgs]
        data = {"stream": self.stream, "group": self.trigger.config["group"], "lines": lines}
        return new_event(TYPE_LOG_BATCH, f"/polyfn/triggers/{self.trigger.id}", data, subject=self.stream).to_json()

    async def run(self) -> None:
        if self.stream.startswith("fn:") and self.ctx.recorder is not None and self._unfollow is None:
            self._unfollow = self.ctx.recorder.follow(followed(self.trigger.function, self.stream), self._on_activation)
        try:
            await super().run()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None

    def _on_activation(self, act: Activation) -> None:
        try:
            self._forward(act)
        except Exception as e:  # never let a subscriber break the invocation that produced the lines
            self.set_health("error", f"forwarding log lines failed: {e}")
            self.count_error("forward_failed")

    def _forward(self, act: Activation) -> None:
        msgs = [(uuid.uuid4().hex, ln.line.encode(), {"activation": act.id, "stream": ln.stream}, ln.ts)
                for ln in act.logs]
        if not msgs:
            return
        t = asyncio.ensure_future(self.ctx.queue.topic_publish_many(self.topic, [self.trigger.id], msgs))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        t.add_done_callback(self._forwarded)

    def _forwarded(self, t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            self.set_health("error", f"storing forwarded log lines failed: {t.exception()}")
            self.count_error("forward_failed")
        self.wake.set()


async def ingest(manager: Any, stream: str, lines: list[tuple[str, float]], namespace: str | None = None) -> int:
    """Store POSTed lines `(message, epoch seconds)` for every log trigger on `stream` (of `namespace`'s functions
    only, when given); returns their count."""
    check_topic(stream)
    subs = [r for r in manager.runners_of("log") if r.stream == stream and (
        namespace is None or owns(namespace, r.trigger.function))]
    if subs and lines:
        now = time.time()
        msgs = [(uuid.uuid4().hex, text.encode(), {}, ts or now) for text, ts in lines]
        await manager.ctx.queue.topic_publish_many(topic_of(stream), [r.trigger.id for r in subs], msgs)
        for r in subs:
            r.wake.set()
    return len(subs)


RUNNER = LogRunner
