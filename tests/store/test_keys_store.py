"""The one key store on SQLite and PostgreSQL: migration 0007 moves the old storage keys in (an existing
database upgrades, clear secrets become encrypted at the next start, pre-0007 hashed keys stay bearer-only),
and two key rings sharing a database (two nodes) see each other's keys and revocations."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from polyfn.auth.keys import KeyRing
from polyfn.auth.secrets import SecretBox
from polyfn.store import Store
from polyfn.store.engine import MIGRATIONS_DIR
from polyfn.store.security import SecurityStore


async def _upgrade_to(db_url: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if db_url.startswith("sqlite"):
        Path(db_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(db_url)

    def run(conn: Any) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
    await engine.dispose()


async def _exec(db_url: str, sql: str, rows: list[dict[str, Any]]) -> None:
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text(sql), rows)
    await engine.dispose()


async def test_0007_moves_storage_keys_and_keeps_legacy_keys(db_url: str, tmp_path: Path) -> None:
    await _upgrade_to(db_url, "0006")  # the head before 0007
    await _exec(db_url, "INSERT INTO storage_keys (access_key_id, secret_access_key, name, function, created_at) "
                "VALUES (:a, :s, :n, :f, 1.0)",
                [{"a": "PFSUSER", "s": "user-secret", "n": "user", "f": ""},
                 {"a": "PFSFUNC", "s": "func-secret", "n": "function:thumb", "f": "thumb"}])
    await _exec(db_url, "INSERT INTO api_keys (id, secret_sha256, scope, function, description, created_at) "
                "VALUES (:i, :h, 'deploy', NULL, 'old', 1.0)",
                [{"i": "PFAKOLD", "h": hashlib.sha256(b"old-secret").hexdigest()}])
    store = await Store.open(db_url)  # upgrades to head: 0007_unified_keys
    try:
        box = SecretBox(tmp_path / "node.key")
        ring = KeyRing(SecurityStore(store), box)
        await ring.start("the-admin-key", interval=3600)
        try:
            # moved storage keys sign with their old secrets; the function's key keeps its owner
            assert ring.signing_credentials("PFSUSER")[0] == "user-secret"  # type: ignore[index]
            secret, rec = ring.signing_credentials("PFSFUNC")  # type: ignore[misc]
            assert secret == "func-secret" and rec.owner == "thumb" and rec.scope == "invoke"
            assert ring.verify("PFSUSER:user-secret") is not None  # and work as bearer keys
            # at rest the secrets are now encrypted with the node key, not in clear
            recs = {k.id: k for k in await ring.list()}
            assert all(k.secret_enc and not k.secret_enc.startswith("plain:") and "secret" not in k.secret_enc
                       for k in recs.values() if k.id != "PFAKOLD")
            # a pre-0007 key: bearer auth works, SigV4 cannot (no secret), and the listing says so
            assert ring.verify("PFAKOLD:old-secret") is not None
            assert ring.signing_credentials("PFAKOLD") == (None, recs["PFAKOLD"])
            assert recs["PFAKOLD"].secret_enc is None
            # the admin key can sign too, also under its aliases
            assert ring.signing_credentials("polyfn-admin")[0] == "the-admin-key"  # type: ignore[index]
        finally:
            await ring.stop()
        # another node (same database, same node key) decrypts them
        other = KeyRing(SecurityStore(store), SecretBox(tmp_path / "node.key"))
        await other.load()
        assert other.signing_credentials("PFSUSER")[0] == "user-secret"  # type: ignore[index]
    finally:
        await store.close()


async def test_two_rings_share_keys_revocations_and_function_keys(store: Store, tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "node.key")
    here, there = KeyRing(SecurityStore(store), box), KeyRing(SecurityStore(store), box)
    await here.load()
    rec, secret = await there.create("read", "only-this")
    assert here.signing_credentials(rec.id) is None
    await here.ensure(rec.id, now=here._loaded_at + 0.5)  # unknown ids reload at most once a second
    assert here.signing_credentials(rec.id) is None
    await here.ensure(rec.id, now=here._loaded_at + 2)
    assert here.signing_credentials(rec.id) == (secret, here.get(rec.id))
    await there.revoke(rec.id)
    await here.load()
    assert here.signing_credentials(rec.id) is None and here.verify(f"{rec.id}:{secret}") is None

    fkey, fsecret = await here.for_function("thumb")
    assert (fkey.scope, fkey.owner, fkey.function) == ("invoke", "thumb", None)
    assert await here.for_function("thumb") == (fkey, fsecret)  # one key per function, made once
    await here.forget_function("thumb")  # the function was deleted: its instances' key is revoked
    assert here.signing_credentials(fkey.id) is None
    again, _ = await here.for_function("thumb")
    assert again.id != fkey.id


async def test_a_reload_racing_a_create_keeps_the_new_key(store: Store, tmp_path: Path) -> None:
    """The ring's periodic reload reads the table while a key is being created: the key handed out must stay
    known (it was the cause of a fresh storage key answering InvalidAccessKeyId)."""
    import asyncio

    class SlowList(SecurityStore):
        gate: asyncio.Event | None = None

        async def list_keys(self) -> list[Any]:
            rows = await super().list_keys()
            if self.gate is not None:
                await self.gate.wait()  # the snapshot was taken before the create below committed
            return rows

    slow = SlowList(store)
    ring = KeyRing(slow, SecretBox(tmp_path / "node.key"))
    await ring.load()
    slow.gate = asyncio.Event()
    reload = asyncio.create_task(ring.load())
    await asyncio.sleep(0.05)
    rec, secret = await ring.create("invoke")
    slow.gate.set()
    await reload
    assert ring.signing_credentials(rec.id) == (secret, rec)
    assert ring.verify(f"{rec.id}:{secret}") is rec


async def test_nodes_starting_together_with_one_admin_key_all_start(store: Store, tmp_path: Path) -> None:
    """The nodes of a cluster share admin.key (one Secret in Kubernetes) and start at the same moment: each
    finds the key missing and stores it; the later ones must take the stored record, not fail their start on
    the unique secret (seen in tests/ship/test_cluster_lb.py: a node exited with an IntegrityError)."""
    import asyncio

    box = SecretBox(tmp_path / "node.key")

    class Together(SecurityStore):
        """Every ring reads the table before any of them writes."""

        read = 0
        both_read = asyncio.Event()

        async def list_keys(self) -> list[Any]:
            rows = await super().list_keys()
            Together.read += 1
            if Together.read >= 3:
                Together.both_read.set()
            await Together.both_read.wait()
            return rows

    rings = [KeyRing(Together(store), box) for _ in range(3)]
    await asyncio.gather(*(r.start("pfk_the-clusters-admin-key") for r in rings))
    try:
        assert len({r.admin_id for r in rings}) == 1
        assert all(r.verify("pfk_the-clusters-admin-key") is not None for r in rings)
    finally:
        for r in rings:
            await r.stop()


async def test_a_refresh_reads_only_what_changed(store: Store, tmp_path: Path) -> None:
    """Between its full reads the ring reads the keys made or revoked since its last read (a node of thousands
    of keys does not parse them all every few seconds): another ring's new key, its revocation and a function's
    new instance key arrive; a key made here while the refresh reads stays."""
    box = SecretBox(tmp_path / "node.key")
    here, there = KeyRing(SecurityStore(store), box), KeyRing(SecurityStore(store), box)
    old, old_secret = await there.create("read")
    await here.load()
    reads: list[float] = []
    changed = here.store.changed_keys

    async def counted(since: float) -> list[Any]:
        reads.append(since)
        return await changed(since)

    here.store.changed_keys = counted  # type: ignore[method-assign]
    rec, secret = await there.create("deploy", namespace="team-a")
    fkey, fsecret = await there.for_function("team-a~thumb")
    await there.revoke(old.id)
    await here.refresh()
    assert here.signing_credentials(rec.id) == (secret, here.get(rec.id)) and here.get(rec.id).namespace == "team-a"
    assert here.get(old.id) is None and here.verify(f"{old.id}:{old_secret}") is None
    assert await here.for_function("team-a~thumb") == (here.get(fkey.id), fsecret)  # not made twice
    await there.forget_function("team-a~thumb")
    await here.refresh()
    assert here.get(fkey.id) is None and "team-a~thumb" not in here._owned
    assert len(reads) == 2 and reads[1] > reads[0]  # each from the last read on (less the clock skew allowed)
    # the rows it read: the changes only, not the ring
    assert {k.id for k in await changed(reads[1])} <= {rec.id, fkey.id, old.id}
