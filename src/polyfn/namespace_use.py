"""What a namespace holds and does beyond its functions' calls: stored bytes, database items, database reads and
writes, workflow transitions — their quotas (`storage_bytes`, `db_items`, `db_bytes`) and their metering.

The node wires it once (`attach` before the object store starts, `attach_db` once the database runs,
`attach_workflows`); each service keeps its own counters where the writes happen (storage/use.py on the
backend's commits; `db_use`, kept by SQL triggers in the write's own transaction: db/storage.py) and checks its
quota there, answering in its face's own terms (S3's `XMinioAdminBucketQuotaExceeded`, DynamoDB's
`LimitExceededException`; polyfn's own API 429 `quota_exceeded`). This module adds them up for `polyfn ns
describe` and feeds the usage meter (observe/usage.py):

* storage: every `sample_s` seconds each namespace's stored bytes × the seconds since the last sample
  (`storage_byte_s`; GB-months in reports), under the pseudo-function `(storage)`;
* database: items read and written per request (db/metering.py), under the calling function (its own key) or
  `(database)`;
* workflows: `…StateEntered` history events (what Step Functions bills as state transitions), under
  `(workflows)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from polyfn import loops
from polyfn.observe.usage import DATABASE, STORAGE, WORKFLOWS
from polyfn.storage.use import StorageUse
from polyfn.tenancy import DEFAULT, SEP, qualify

log = logging.getLogger("polyfn.usage")
SAMPLE_S = 300.0  # seconds between samples of stored bytes (POLYFN_STORAGE_SAMPLE_S)


class NamespaceUse:
    def __init__(self, quotas: Callable[[str], Any], meter: Any = None, sample_s: float = SAMPLE_S,
                 clock: Callable[[], float] = time.time):
        self.quotas = quotas  # namespace → tenancy.Quotas (the namespaces service's cache)
        self.meter = meter  # observe/usage.UsageMeter, None when metering is off
        self.sample_s = sample_s
        self.clock = clock
        self.storage: StorageUse | None = None
        self.db: Any = None  # db/core.Database
        self.flush: Callable[[], Any] | None = None  # writes the meter's pending sums (the recorder's flush)
        self._task: asyncio.Task[None] | None = None
        self._sampled = 0.0

    # -- wiring ---------------------------------------------------------------------------------------------

    def attach(self, storage: Any) -> None:
        """The object store (storage/service.StorageService): its local backend counts and checks each write."""
        if storage.proxy is None:
            self.storage = storage.backend.use = StorageUse(storage.backend, self.quotas)

    def attach_db(self, db: Any) -> None:
        """The document database (db/service.DbService), once started."""
        if db.db is None:
            return
        self.db = db.db
        db.db.quotas = self.quotas
        if self.meter is not None:
            for face in (db.dynamodb, db.wx):
                if face is not None:
                    face.meter = self.db_items

    def attach_workflows(self, engine: Any) -> None:
        if self.meter is not None:
            engine.on_step.append(self.workflow_step)

    # -- metering -------------------------------------------------------------------------------------------

    def db_items(self, ns: str, owner: str | None, reads: int, writes: int) -> None:
        """A database request of namespace `ns` by a key owned by `owner` (a function's held name, `app:ENV`, or
        None) read `reads` items and wrote `writes`."""
        fn = owner if owner and not owner.startswith("app:") and (ns == DEFAULT or owner.startswith(ns + SEP)) \
            else qualify(ns, DATABASE)
        self.meter.count(fn, "db_reads", reads)
        self.meter.count(fn, "db_writes", writes)

    def workflow_step(self, ex: Any, events: list[dict[str, Any]]) -> None:
        n = sum(1 for e in events if str(e.get("type", "")).endswith("StateEntered"))
        if n:
            self.meter.count(qualify(getattr(ex, "namespace", DEFAULT) or DEFAULT, WORKFLOWS), "transitions", n)

    def sample(self, now: float | None = None) -> None:
        """Meter each namespace's stored bytes for the time since the last sample."""
        now = self.clock() if now is None else now
        since, self._sampled = self._sampled, now
        if self.meter is None or self.storage is None or not since:
            return
        dt = now - since
        for ns, (_objects, size) in list(self.storage.namespaces.items()):
            if size > 0:
                self.meter.count(qualify(ns, STORAGE), "storage_byte_s", int(size * dt), now)

    async def start(self) -> None:
        """Count what the store holds (a walk of the buckets, once), then sample it in the background."""
        if self.storage is not None:
            t = time.monotonic()
            await asyncio.to_thread(self.storage.count)
            log.info("object store: counted %d buckets in %.2f s", len(self.storage.buckets), time.monotonic() - t)
        self.sample()
        if self.meter is not None and self.storage is not None:
            self._task = asyncio.create_task(self._run(), name="storage sampling")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sample_s)
            self.sample()
            if self.flush is not None:
                with contextlib.suppress(Exception):
                    await self.flush()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await loops.cancelled(task)
        self.sample()  # (the time since the last sample is metered too)

    # -- use against the quotas -----------------------------------------------------------------------------

    async def held(self, ns: str) -> dict[str, int | None]:
        """{storage_bytes, storage_objects, db_items, db_bytes} of namespace `ns` (None: not running here)."""
        out: dict[str, int | None] = {"storage_bytes": None, "storage_objects": None, "db_items": None,
                                      "db_bytes": None}
        if self.storage is not None:
            out["storage_objects"], out["storage_bytes"] = self.storage.used(ns)
        if self.db is not None:
            from polyfn.db.storage import namespace_use

            out["db_items"], out["db_bytes"] = await self.db.storage.read(lambda c: namespace_use(c, ns))
        return out
