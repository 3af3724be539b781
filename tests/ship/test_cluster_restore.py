"""docs/operations.md "Backup and restore", a cluster: the backup and restore blocks run as written.

A cluster node (`--cluster`: PostgreSQL on a database of the test's own, NATS JetStream on a stream of its own,
moto's S3 server holding the artifact bucket and the object store's upstream buckets) gets a function with a
secret, an activation and an object. The backup block runs in bash while the node serves; then everything is
destroyed — the database dropped, every bucket deleted, the stream deleted, the node's data dir removed — and the
restore block runs; its `systemctl stop|start polyfn` lines stop and start the test's node. The node it starts on
an empty data dir with the saved key must serve all of it again. The blocks' `/var/lib/polyfn`, `/root/` and
artifact bucket name are pointed at the test's own; libpq's and the aws CLI's variables at the test's services.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from .. import needs
from ..e2e import conftest as e2e
from ..e2e.conftest import (
    PG_ADMIN_DSN,
    REPO,
    Server,
    _pg,
    delete_stream,
    moto_server,
    start_server,
)

pg_url, jetstream_queue = e2e.pg_url, e2e.jetstream_queue  # fixtures of tests/e2e, used here
DOC = REPO / "docs" / "operations.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
VENV_BIN = Path(sys.executable).parent  # the aws CLI of the venv running the tests


def cluster_blocks() -> tuple[str, str]:
    part = DOC.read_text().split("\n### Backup and restore\n", 1)[1].split("\n### ", 1)[0]
    part = part.split("**A cluster**", 1)[1]
    backup, restore = [code for lang, code in FENCE.findall(part) if lang == "sh"][:2]
    return backup, restore


@pytest.fixture
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    needs.module("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


def tool(name: str) -> None:
    if shutil.which(name) is None and not (VENV_BIN / name).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true")
        pytest.skip(f"{name} is not installed")


class Run:
    """The documented blocks against this test's services; `systemctl` lines stop or start its node."""

    def __init__(self, tmp_path: Path, pg_url: str, moto: str, queue: dict[str, str]) -> None:
        self.data_dir, self.backups = tmp_path / "data", tmp_path / "backups"
        self.backups.mkdir()
        self.code_bucket = f"polyfn-code-{secrets.token_hex(4)}"
        self.database = pg_url.rsplit("/", 1)[1]
        admin = urlsplit(PG_ADMIN_DSN)
        self.shell_env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
                          "PGHOST": admin.hostname or "127.0.0.1", "PGPORT": str(admin.port or 5432),
                          "PGUSER": admin.username or "postgres", "PGDATABASE": self.database,
                          "AWS_ENDPOINT_URL": moto, "AWS_DEFAULT_REGION": "us-east-1",
                          "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        if admin.password:
            self.shell_env["PGPASSWORD"] = admin.password
        self.node_env = {"POLYFN_DATABASE_URL": pg_url, **queue,
                         "POLYFN_ARTIFACTS_URL": f"s3://{self.code_bucket}/artifacts",
                         "POLYFN_ARTIFACTS_ENDPOINT": moto, "POLYFN_ARTIFACTS_ACCESS_KEY_ID": "testing",
                         "POLYFN_ARTIFACTS_SECRET_ACCESS_KEY": "testing",
                         "POLYFN_STORAGE_BACKEND": "s3", "POLYFN_STORAGE_UPSTREAM_URL": moto,
                         "POLYFN_STORAGE_UPSTREAM_ACCESS_KEY_ID": "testing",
                         "POLYFN_STORAGE_UPSTREAM_SECRET_ACCESS_KEY": "testing"}
        self.s3 = boto3.client("s3", endpoint_url=moto, aws_access_key_id="testing",
                               aws_secret_access_key="testing", region_name="us-east-1")
        self.s3.create_bucket(Bucket=self.code_bucket)
        self.node: Server | None = None

    def start(self) -> Server:
        self.node = start_server(self.data_dir, "--cluster", env=self.node_env)
        return self.node

    def stop(self) -> None:
        if self.node is not None:
            assert self.node.stop(signal.SIGTERM) == 0, self.node.log.read_text()[-3000:]
            self.node = None

    def bash(self, lines: list[str]) -> None:
        script = "\n".join(lines).replace("/var/lib/polyfn", str(self.data_dir)) \
            .replace("/root/", f"{self.backups}/").replace("polyfn-code", self.code_bucket)
        r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], capture_output=True, text=True,
                           timeout=300, env=self.shell_env)
        assert r.returncode == 0, f"{script}\nfailed ({r.returncode}):\n{r.stdout}\n{r.stderr}"

    def block(self, block: str) -> None:
        pending: list[str] = []
        for line in block.splitlines():
            if line.strip() in ("systemctl stop polyfn", "systemctl start polyfn"):
                if pending:
                    self.bash(pending)
                    pending = []
                self.stop() if line.strip().endswith("stop polyfn") else self.start()
            else:
                pending.append(line)
        if pending:
            self.bash(pending)

    def destroy(self, stream: str) -> None:
        """Everything the cluster had: the database, every bucket, the JetStream stream, the node's data dir."""
        import asyncio

        self.stop()
        asyncio.run(_pg(f"DROP DATABASE {self.database} WITH (FORCE)"))
        for bucket in [b["Name"] for b in self.s3.list_buckets()["Buckets"]]:
            for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for o in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    self.s3.delete_object(Bucket=bucket, Key=o["Key"], VersionId=o["VersionId"])
            self.s3.delete_bucket(Bucket=bucket)
        assert self.s3.list_buckets()["Buckets"] == []
        delete_stream(self.node_env["POLYFN_QUEUE_URL"], stream)
        shutil.rmtree(self.data_dir)


@pytest.mark.timeout(300)
def test_cluster_backup_and_restore_blocks_bring_everything_back(tmp_path: Path, pg_url: str, moto: str,
                                                                  jetstream_queue: dict[str, str]) -> None:
    for name in ("pg_dump", "pg_restore", "createdb", "dropdb", "aws"):
        tool(name)
    backup, restore = cluster_blocks()
    assert "pg_dump -Fc" in backup and "pg_restore" in restore and "node.key" in backup and "node.key" in restore
    run = Run(tmp_path, pg_url, moto, jetstream_queue)
    objects = f"kept-{secrets.token_hex(4)}"
    try:
        node = run.start()
        old_admin = node.key
        node.cli("secret", "set", "greeting", input="hello from the cluster backup", check=True)
        node.deploy("keeper", {"handler.py": (
            "import os\n\ndef handler(event, context):\n    return os.environ['greeting']\n")},
            secrets=["greeting:env"])
        first = node.api.post("/v1/functions/keeper/invoke", json={})
        assert first.status_code == 200 and first.json() == "hello from the cluster backup", first.text
        activation = first.headers["x-polyfn-activation-id"]
        (tmp_path / "obj.txt").write_text("a shared object")
        node.cli("storage", "mb", f"s3://{objects}", check=True)
        node.cli("storage", "cp", str(tmp_path / "obj.txt"), f"s3://{objects}/obj.txt", check=True)
        assert run.s3.get_object(Bucket=objects, Key="obj.txt")["Body"].read() == b"a shared object"

        run.block(backup)  # while the node serves
        kept = run.backups / "polyfn-cluster-backup"
        assert (kept / "polyfn.pgdump").is_file() and (kept / "node.key").is_file()
        assert any((kept / "code").rglob("*.zip")) and (kept / "objects" / objects / "obj.txt").is_file()
        assert run.node is not None
        run.node.deploy("latecomer", {"handler.py": "def handler(event, context):\n    return 1\n"})

        run.destroy(jetstream_queue["POLYFN_QUEUE_STREAM"])
        run.block(restore)
        node = run.node
        assert node is not None, "the restore block starts the node"
        names = {f["name"] for f in node.api.get("/v1/functions").json()["functions"]}
        assert "keeper" in names and "latecomer" not in names, names
        again = node.api.post("/v1/functions/keeper/invoke", json={})  # code from the bucket, secret via node.key
        assert again.status_code == 200 and again.json() == "hello from the cluster backup", again.text
        assert node.api.get(f"/v1/activations/{activation}").status_code == 200
        out = tmp_path / "back.txt"
        node.cli("storage", "cp", f"s3://{objects}/obj.txt", str(out), check=True)
        assert out.read_text() == "a shared object"
        # the admin key of the node that was backed up is in the database: it still works
        r = httpx.get(node.url + "/v1/functions", headers={"authorization": f"Bearer {old_admin}"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        run.stop()
