"""A node that does not hold the cluster's node key refuses to start, with one line that says what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from polyfn.auth.secrets import SecretBox

from .conftest import start_server


def refused(data_dir: Path, env: dict[str, str]) -> str:
    with pytest.raises(RuntimeError, match="exited with") as caught:
        start_server(data_dir, env=env)
    text = str(caught.value)
    assert "Traceback" not in text, text
    return text


def test_a_node_without_the_clusters_key_is_refused(tmp_path: Path, pg_url: str) -> None:
    env = {"POLYFN_DATABASE_URL": pg_url}
    first = start_server(tmp_path / "a", env=env)
    try:
        # a fresh data dir: no node.key at all
        text = refused(tmp_path / "b", env)
        assert "cannot join the cluster" in text and "node.key is missing" in text, text
        assert not (tmp_path / "b" / "node.key").exists()
        # another key
        (tmp_path / "c").mkdir()
        SecretBox(tmp_path / "c" / "node.key").encrypt("a key of its own")
        text = refused(tmp_path / "c", env)
        assert "is not this cluster's node key" in text and "copy it from a running node" in text, text
        # with the cluster's key it joins and serves what the first node deployed
        first.deploy("shared", {"handler.py": "def handler(event, context):\n    return 'both'\n"})
        (tmp_path / "d").mkdir()
        shutil.copy2(tmp_path / "a" / "node.key", tmp_path / "d" / "node.key")
        second = start_server(tmp_path / "d", env=env)
        try:
            assert second.http.get("/fn/shared").text == "both"
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_node_refuses_a_rolling_upgrade_across_an_incompatible_migration(tmp_path: Path, pg_url: str) -> None:
    """The database at 0008 with a node of that schema still connected: this version's 0009 would break it, so
    the new node refuses in one line (store/schema.py); once the old node is gone, it migrates and serves."""
    import asyncio

    import asyncpg
    from tests.store.test_schema import _at

    asyncio.run(_at(pg_url, "0008_versions"))
    env = {"POLYFN_DATABASE_URL": pg_url}

    async def old_node() -> None:
        conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"),
                                     server_settings={"application_name": "polyfn schema=0008_versions"})
        try:
            text = refused(tmp_path / "a", env)
        finally:
            await conn.close()
        assert "cannot start on this database: migration 0009_logs_in_activations cannot run while older nodes " \
               "use the shared database" in text, text
        assert "cluster.updateStrategy=Recreate" in text and text.count('docs/operations.md, "Upgrades"') == 1, text

    asyncio.run(old_node())
    node = start_server(tmp_path / "a", env=env)
    node.stop()
