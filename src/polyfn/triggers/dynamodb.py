"""Table change triggers (DynamoDB Streams → Lambda): `polyfn trigger add FN dynamodb --table T`.

Options: `table` (required), `batch_size` (1-10000, default 100), `start` (`LATEST`, default: changes from
now on; `TRIM_HORIZON`: every change still in the stream, 24 hours), `view` (`NEW_IMAGE`, `OLD_IMAGE`,
`NEW_AND_OLD_IMAGES`, `KEYS_ONLY`; default the table's StreamViewType, else NEW_AND_OLD_IMAGES).

The runner reads the table's change feed (`db/changes.py`: written in the transaction of each change) from
its checkpoint, in order, a batch at a time, and moves the checkpoint (kept in the trigger's state) only after
the batch succeeded or went to the dead-letter queue: a kill -9 loses no change (a batch in flight is
delivered again). One batch at a time keeps every partition key's changes in order; a `batchItemFailures`
answer retries from the first failed record on, as Lambda does for streams. In a cluster the leader node reads
(`single_consumer`).
"""

from __future__ import annotations

import json
from typing import Any

from polyfn.events import dynamodb as shape
from polyfn.events.cloudevent import TYPE_DB_CHANGES, new_event
from polyfn.triggers.base import BrokerRunner, TriggerConfigError, TriggerFailure, only, opt_num, opt_str
from polyfn.triggers.delivery import Message, deliver


def validate(config: dict[str, Any]) -> dict[str, Any]:
    only(config, "dynamodb", {"table", "batch_size", "start", "view"})
    table = opt_str(config, "table", required=True)
    start = config.get("start", "LATEST")
    if start not in ("LATEST", "TRIM_HORIZON"):
        raise TriggerConfigError(f"option start={start!r}: use LATEST or TRIM_HORIZON")
    view = config.get("view")
    if view is not None and view not in shape.VIEWS:
        raise TriggerConfigError(f"option view={view!r}: use one of {', '.join(shape.VIEWS)}")
    return {"table": table, "batch_size": opt_num(config, "batch_size", 100, 1, 10000, integer=True),
            "start": start, **({"view": view} if view else {})}


class StreamRunner(BrokerRunner):
    kind = "dynamodb"

    def single_consumer(self) -> bool:
        return True

    async def consume(self) -> None:
        feed = self.ctx.db
        if feed is None:
            raise TriggerFailure("db_unavailable", "this node has no document database")
        cfg = self.trigger.config
        table = cfg["table"]
        t = await feed.db.table(feed.ns, table)  # NoSuchTable: reported in health, retried with backoff
        await feed.db.set_changes(feed.ns, table, True)
        state = dict(self.trigger.state)
        if "seq" not in state:
            state["seq"] = 0 if cfg["start"] == "TRIM_HORIZON" else await feed.last_seq()
            await self.ctx.store.save_state(self.trigger.id, state)
            self.trigger.state = state
        self.connected()
        while True:
            seen = feed.version
            recs = await feed.read(feed.ns, table, state["seq"], cfg["batch_size"])
            if not recs:
                await feed.wait(seen, 1.0)
                continue
            t = await feed.db.table(feed.ns, table)
            view = cfg.get("view") or t.stream_view or "NEW_AND_OLD_IMAGES"
            label = t.stream_label or "polyfn"
            region = feed.db.region
            msgs = [Message(id=str(seq), body=json.dumps(shape.record(seq, rec, view, table, label, region)).encode(),
                            sent_at=ts) for seq, ts, rec in recs]
            await deliver(self, "dynamodb", table, msgs, single=False, builder=self.build,
                          retry_from_first_failure=True)
            state["seq"] = recs[-1][0]
            await self.ctx.store.save_state(self.trigger.id, state)
            self.trigger.state = state

    def build(self, msgs: list[Message]) -> bytes:
        data = {"table": self.trigger.config["table"], "records": [json.loads(m.body) for m in msgs]}
        return new_event(TYPE_DB_CHANGES, f"/polyfn/triggers/{self.trigger.id}", data,
                         subject=self.trigger.config["table"]).to_json()

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": self.trigger.state.get("seq")}


RUNNER = StreamRunner
