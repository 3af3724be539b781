"""JetStream publishes and pulls on a nats-py connection, without its per-message request machinery.

nats-py's `js.publish` is a request per message: a random token (`os.urandom`), a future, an
`asyncio.wait_for` (a task) and a JSON parse of the PubAck; its `fetch` waits for each message of a batch
with `wait_for` as well. At thousands of jobs a second that was a quarter of the node's loop (py-spy,
`bench/async.py --queue-url`). Here:

* `Publisher`: every publish carries a reply subject under one subscription of the node's own (`<inbox>.<n>`,
  a counter); its PubAck resolves a future. Timeouts are swept once a quarter second for all publishes (they
  are made in order with one timeout, so the oldest expire first), not timed one by one. A PubAck is parsed
  only when it reports an error; the stream that stored the message is checked in its bytes (what the
  `Nats-Expected-Stream` header asked of JetStream: that header, stored with every message, cost each
  delivery a parse of it in nats-py). A message without a `msg_id` carries no header at all. The caller
  still returns only once JetStream stored the message.
* `Puller`: a function's jobs from its durable consumer. A fetch asks for `n` messages with `no_wait`
  (JetStream sends what it has now, then a 404 status when short): the batch ends cleanly, no request left
  open that could deliver more than the node has room for. With nothing there, it asks for one message with
  an expiry and waits for it, and the next fetch goes back to batches. With `max_bytes` JetStream sends only what
  fits (its sizes are the whole messages'); when not even the first fits it ends the request with a 409 and
  the fetch returns nothing at once, `over_bytes` set. Messages arrive on a subscription of the
  puller's own and are handed over as they come; a message that arrives after its fetch gave up (a lingering
  request answered late) is handed over by the next one, and kept from the ack wait meanwhile by the heartbeat
  of the held jobs (`arrived`).
* `subscribe`: both subscriptions' messages are handed to a plain function from nats-py's parser
  (`Direct`, a hook on the connection's `_process_msg` for these subscriptions alone), not through the
  subscription's `asyncio.Queue` and its task: per job that was a queue put and get, a task wake-up and a
  callback coroutine for the PubAck and again for the delivery. A PubAck builds no `Msg` at all. Messages of
  every other subscription take nats-py's own path.
* `publish_many`: a job without a message id and the acknowledgements of a completion batch (one write for the
  batch) go onto nats-py's pending buffer without its checks per message.

(Written against nats-py 2.16's `_process_msg`, `_process_headers`, `_build_message`, `Subscription._id` and its
pending buffer: pyproject.toml pins that minor; a version without them fails tests/queue/test_jetstream.py.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("polyfn.queue")

#: the status header JetStream puts on a no-responders reply and on pull-request endings (404, 408, 409)
STATUS = "Status"


class PublishFailed(Exception):
    """JetStream did not store the message (its error, no stream, or no PubAck in time)."""


#: what a direct subscription's handler is given: (sid, subject, reply, payload, headers as nats-py parses them)
Handler = Callable[[int, bytes, bytes, bytes, "dict[str, str] | None"], None]


class Direct:
    """The messages of chosen subscriptions of one nats-py connection, handed to a plain function as the parser
    reads them (one per connection: `of`). nats-py's parser awaits `nc._process_msg(sid, subject, reply,
    payload, headers)` for every MSG; the instance's attribute shadows the method, answers the subscriptions
    registered here and passes every other one to nats-py's own. A handler must not block or await: it runs in
    the connection's read loop (a failure is logged, never raised into the parser)."""

    def __init__(self, nc: Any):
        self.nc = nc
        self.handlers: dict[int, Handler] = {}
        self._theirs = nc._process_msg
        self._headers = nc._process_headers
        nc._process_msg = self._process_msg

    @classmethod
    def of(cls, nc: Any) -> Direct:
        """The connection's hook, installed at the first call."""
        made = getattr(nc, "_polyfn_direct", None)
        if made is None:
            made = nc._polyfn_direct = cls(nc)
        return made

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        handler = self.handlers.get(sid)
        if handler is None:
            await self._theirs(sid, subject, reply, data, headers)
            return
        stats = self.nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(sid, subject, reply, data, await self._headers(headers) if headers else None)
        except Exception:
            log.exception("async queue: a NATS message on %r was not handled", subject[:200])


async def subscribe(nc: Any, subject: str, handler: Handler) -> Any:
    """A subscription whose messages go to `handler` (`Direct`; through nats-py's callback for a message read
    before the subscription was registered with the hook)."""

    async def cb(msg: Any) -> None:
        handler(msg._sid, msg.subject.encode(), msg.reply.encode(), msg.data, msg.headers)

    direct = Direct.of(nc)
    sub = await nc.subscribe(subject, cb=cb)
    direct.handlers[sub._id] = handler
    return sub


async def publish_many(nc: Any, msgs: list[tuple[str, str, bytes]]) -> None:
    """Messages `(subject, reply, payload)` without headers, written as nats-py's `publish` writes them (onto its
    pending buffer, its flusher kicked once) without its checks per message (subject patterns, state, the
    command built with an f-string): the subjects are the node's own (a job's, a JetStream reply's). Through
    `nc.publish`, one by one, when the connection is not plainly connected (reconnecting, draining, closed: its
    buffering and errors) or the buffer would pass its limit (its forced flush)."""
    cmds = []
    size = nbytes = 0
    for subject, reply, payload in msgs:
        cmd = b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
        cmds.append(cmd)
        size += len(cmd)
        nbytes += len(payload)
    if nc._status != nc.CONNECTED or nc._pending_data_size + size > nc._max_pending_size:
        for subject, reply, payload in msgs:
            await nc.publish(subject, payload, reply=reply)
        return
    stats = nc.stats
    stats["out_msgs"] += len(cmds)
    stats["out_bytes"] += nbytes
    nc._pending.extend(cmds)
    nc._pending_data_size += size
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


async def unsubscribe(nc: Any, sub: Any) -> None:
    direct = getattr(nc, "_polyfn_direct", None)
    if direct is not None:
        direct.handlers.pop(sub._id, None)
    await sub.unsubscribe()


class Publisher:
    def __init__(self, nc: Any, timeout: float = 5.0):
        self.nc = nc
        self.timeout = timeout
        self.prefix = ""
        self._n = 0
        self._futs: dict[bytes, tuple[asyncio.Future[None], bytes]] = {}  # token → (future, b'"stream":"NAME"')
        self._order: collections.deque[tuple[float, bytes]] = collections.deque()  # (deadline, token), oldest first
        self._sub: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.prefix = self.nc.new_inbox() + "."
        self._sub = await subscribe(self.nc, self.prefix + "*", self._on_ack)
        self._sweeper = self._loop.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for fut, _ in self._futs.values():
            if not fut.done():
                fut.set_exception(PublishFailed("the connection to NATS was closed"))
        self._futs.clear()

    async def publish(self, subject: str, payload: bytes, stream: str, msg_id: str | None = None) -> None:
        """Returns once JetStream acknowledged the message as stored by `stream`; raises PublishFailed otherwise.
        `msg_id`: JetStream drops a second message with the same id within the stream's duplicate window."""
        self._n += 1
        token = b"%d" % self._n
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._futs[token] = (fut, b'"stream":"%s"' % stream.encode())
        self._order.append((time.monotonic() + self.timeout, token))
        try:
            if msg_id is None:
                await publish_many(self.nc, [(subject, self.prefix + token.decode(), payload)])
            else:
                await self.nc.publish(subject, payload, reply=self.prefix + token.decode(),
                                      headers={"Nats-Msg-Id": msg_id})
            await fut
        finally:
            self._futs.pop(token, None)

    def _on_ack(self, _sid: int, subject: bytes, _reply: bytes, data: bytes, headers: dict[str, str] | None) -> None:
        fut, stream = self._futs.pop(subject[len(self.prefix):], (None, b""))
        if fut is None or fut.done():
            return
        if not data:  # a status: 503 no responders (no stream for the subject)
            status = headers.get(STATUS, "") if headers else ""
            fut.set_exception(PublishFailed(f"no JetStream stream took the message (status {status or '?'})"))
        elif b'"error"' in data:
            try:
                err = json.loads(data).get("error") or {}
            except ValueError:
                err = {}
            fut.set_exception(PublishFailed(f"JetStream refused the message: {err.get('description') or data[:200]!r}"))
        elif stream not in data:  # (a PubAck is `{"stream":"NAME","seq":N…}`)
            fut.set_exception(PublishFailed(f"another stream than the queue's stored the message: {data[:200]!r}"))
        else:
            fut.set_result(None)

    async def _sweep(self) -> None:
        order, futs = self._order, self._futs
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            while order and (order[0][0] <= now or order[0][1] not in futs):
                _, token = order.popleft()
                fut, _ = futs.pop(token, (None, b""))
                if fut is not None and not fut.done():
                    fut.set_exception(PublishFailed(f"no PubAck within {self.timeout:g} s"))


class Puller:
    """One durable consumer's messages for this node (see the module's docstring)."""

    def __init__(self, nc: Any, js_prefix: str, stream: str, consumer: str):
        self.nc = nc
        self.next_subject = f"{js_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.inbox = ""
        self._msgs: collections.deque[Any] = collections.deque()
        self._ended = 0  # requests ended by a status (404 no messages, 408 expired, 409 …)
        self._over = 0  # of those, requests whose next message did not fit their max_bytes (a 409)
        self.over_bytes = False  # the last fetch returned nothing: its first message did not fit
        self._wake = asyncio.Event()
        self._sub: Any = None

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        self._sub = await subscribe(self.nc, self.inbox, self._on_msg)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await unsubscribe(self.nc, self._sub)

    def _on_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None) -> None:
        if not data and headers and STATUS in headers:
            if headers[STATUS] != "100":  # (100: a heartbeat, not asked for)
                self._ended += 1
                if headers[STATUS] == "409" and any(k == "Description" and "MaxBytes" in v for k, v in headers.items()):
                    self._over += 1
        else:  # (the message nats-py would have made: the job's ack, nak and metadata are its)
            self._msgs.append(self.nc._build_message(sid, subject, reply, data, headers))
        self._wake.set()

    async def _request(self, body: dict[str, Any]) -> None:
        await self.nc.publish(self.next_subject, json.dumps(body).encode(), reply=self.inbox)

    async def _until(self, done: Any, deadline: float) -> None:
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.clear()
            if done():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def arrived(self) -> list[Any]:
        """Messages delivered here that no fetch returned yet (kept held with heartbeats like taken ones)."""
        return list(self._msgs)

    def _take(self, n: int) -> list[Any]:
        q = self._msgs
        return [q.popleft() for _ in range(min(n, len(q)))]

    async def fetch(self, n: int, timeout: float, max_bytes: int = 0) -> list[Any]:
        """Up to `n` messages (with `max_bytes`, as many as fit in it), waiting at most `timeout` seconds for the
        first."""
        self.over_bytes = False
        if len(self._msgs) >= n:
            return self._take(n)
        deadline = time.monotonic() + timeout
        ended, had, over = self._ended, len(self._msgs), self._over
        want = n - had
        sized = {"max_bytes": max_bytes} if max_bytes > 0 else {}
        await self._request({"batch": want, "no_wait": True, **sized})
        # the batch ends with its `want`-th message, or with a status when JetStream had fewer (or no more fit)
        await self._until(lambda: self._ended > ended or len(self._msgs) >= had + want, min(deadline, time.monotonic() + 2))
        if self._msgs:
            return self._take(n)
        left = deadline - time.monotonic()
        if self._over > over:
            self.over_bytes = True
        elif left > 0.01:
            ended, over = self._ended, self._over
            await self._request({"batch": 1, "expires": int(left * 1e9) - 1_000_000, **sized})
            await self._until(lambda: self._msgs or self._ended > ended, deadline)
            self.over_bytes = not self._msgs and self._over > over
        return self._take(n)
