"""A cluster: nodes sharing a PostgreSQL database and an artifact bucket serve the same functions.

A deploy, a redeploy or a delete on one node reaches the other within a few sync passes. Every deploy puts
its code in the bucket (here the S3 API of a third polyfn node, one for the module: each test has a bucket and a
key of its own there; boto3 looks at what is in it). The nodes run on one host, where one node can read the
other's data dir, so the second test removes the deploying node's copy to show that a node with nothing but the
bucket serves the function. Needs PostgreSQL (skipped without it, a failure under CI=true)."""

from __future__ import annotations

import io
import secrets
import shutil
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import HOST_FS, Server, error_code, free_port, start_server, wait_until
from .storage_helpers import new_key, s3_client, storage_info
from .test_lambda_versions import ROLE, code, ran
from .test_lambda_versions import client as lambda_client

V1 = "def handler(event, context):\n    return 'one'\n"
V2 = "def handler(event, context):\n    return 'two'\n"
OTHER = "def handler(event, context):\n    return 'other'\n"


def body(s: Server, name: str) -> str:
    try:
        r = s.http.get(f"/fn/{name}", timeout=10)
    except httpx.HTTPError:
        return ""
    return r.text if r.status_code == 200 else f"{r.status_code} {error_code(r)}"


@pytest.fixture(scope="module")
def artifact_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The node whose S3 API holds the artifact buckets: one for the module (each cluster has its own bucket)."""
    s = start_server(tmp_path_factory.mktemp("s3"))
    yield s
    s.stop()


class Cluster:
    """A bucket of its own on the artifact store (a third node), and the settings every cluster node gets."""

    def __init__(self, tmp_path: Path, pg_url: str, store: Server, prefix: str = ""):
        self.tmp_path = tmp_path
        self.store = store
        self.nodes: list[Server] = []
        self.bucket = f"artifacts-{secrets.token_hex(4)}"
        key = new_key(store, self.bucket)
        self.s3 = s3_client(store, key)
        self.s3.create_bucket(Bucket=self.bucket)
        self.env = {"POLYFN_DATABASE_URL": pg_url, "POLYFN_SYNC_INTERVAL": "0.3",
                    "POLYFN_ARTIFACTS_URL": f"s3://{self.bucket}" + (f"/{prefix}" if prefix else ""),
                    "POLYFN_ARTIFACTS_ENDPOINT": storage_info(store)["endpoint"],
                    "POLYFN_ARTIFACTS_ACCESS_KEY_ID": key["access_key_id"],
                    "POLYFN_ARTIFACTS_SECRET_ACCESS_KEY": key["secret_access_key"]}

    def start(self, name: str) -> Server:
        """A node; nodes sharing a database share the node key (secrets are encrypted with it)."""
        first = self.tmp_path / "a" / "node.key"
        (self.tmp_path / name).mkdir(exist_ok=True)
        if name != "a" and first.exists():
            shutil.copy2(first, self.tmp_path / name / "node.key")
        node = start_server(self.tmp_path / name, env=self.env)
        self.nodes.append(node)
        return node

    def stop(self, node: Server) -> None:
        node.stop()
        self.nodes.remove(node)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()


def test_deploys_redeploys_and_deletes_reach_every_node(tmp_path: Path, pg_url: str,
                                                        artifact_store: Server) -> None:
    c = Cluster(tmp_path, pg_url, artifact_store, prefix="code")
    try:
        s3 = c.s3
        a, b = c.start("a"), c.start("b")

        a.deploy("greet", {"handler.py": V1})
        objects = [o["Key"] for o in s3.list_objects_v2(Bucket=c.bucket, Prefix="code/").get("Contents", [])]
        assert len(objects) == 1 and objects[0].endswith(".zip"), objects
        assert body(a, "greet") == "one"
        assert wait_until(lambda: body(b, "greet") == "one", 20), body(b, "greet")

        a.deploy("greet", {"handler.py": V2})  # a new revision: b switches to it, and its archive is stored
        assert wait_until(lambda: body(b, "greet") == "two", 20), body(b, "greet")
        assert len(s3.list_objects_v2(Bucket=c.bucket, Prefix="code/")["Contents"]) == 2

        b.deploy("other", {"handler.py": OTHER})  # and the other way round
        assert wait_until(lambda: body(a, "other") == "other", 20), body(a, "other")

        # Triggers too: added on a, running on b (cron: the leader among them fires each tick); deleted on a,
        # stopped on b.
        r = a.api.post("/v1/functions/greet/triggers", json={"kind": "cron", "id": "yearly",
                                                             "config": {"schedule": "0 0 1 1 *"}})
        assert r.status_code == 201, r.text

        def trigger_ids(s: Server) -> list[str]:
            return [t["id"] for t in s.api.get("/v1/functions/greet/triggers").json()["triggers"]]

        assert wait_until(lambda: trigger_ids(b) == ["yearly"], 20), trigger_ids(b)
        assert a.api.delete("/v1/triggers/yearly").status_code in (200, 204)
        assert wait_until(lambda: trigger_ids(b) == [], 20), trigger_ids(b)
        assert trigger_ids(a) == []

        assert a.api.delete("/v1/functions/greet").status_code in (200, 204)
        assert wait_until(lambda: body(b, "greet") == "404 function_not_found", 20), body(b, "greet")
        assert body(b, "other") == "other"
    finally:
        c.close()


def test_code_fetched_from_the_bucket_when_the_deploying_node_s_copy_is_gone(tmp_path: Path, pg_url: str,
                                                                             artifact_store: Server) -> None:
    """The node that joins later has never seen the code, and the deploying node's copy is deleted first:
    only the bucket has it."""
    c = Cluster(tmp_path, pg_url, artifact_store)
    try:
        a = c.start("a")
        a.deploy("greet", {"handler.py": V1})
        lam = lambda_client(a)  # a published version, pinned to revision 1 while revision 2 is current
        lam.create_function(FunctionName="ver", Runtime="python3.12", Role=ROLE, Publish=True,
                            Handler="lambda_function.lambda_handler", Code={"ZipFile": code("one")})
        lam.update_function_code(FunctionName="ver", ZipFile=code("two"))
        c.stop(a)
        shutil.rmtree(tmp_path / "a" / "code")  # the deploying node is gone, and its disk with it
        b = c.start("b")
        assert body(b, "greet") == "one"  # served from the first request: the start syncs before it answers
        assert any((tmp_path / "b" / "code" / "greet").iterdir())
        lam = lambda_client(b)
        assert ran(lam) == ("two", "$LATEST")
        assert ran(lam, "1") == ("one", "1")  # the pinned revision's code, fetched on its first invocation
    finally:
        c.close()


def test_an_archive_that_is_not_the_recorded_code_is_refused(tmp_path: Path, pg_url: str,
                                                             artifact_store: Server) -> None:
    """What a node fetches must be the code whose digest the database recorded: an archive replaced in the
    bucket is not run, and the node says which revision it does not serve."""
    c = Cluster(tmp_path, pg_url, artifact_store)
    try:
        s3 = c.s3
        a = c.start("a")
        a.deploy("greet", {"handler.py": V1})
        c.stop(a)
        shutil.rmtree(tmp_path / "a" / "code")
        (obj,) = s3.list_objects_v2(Bucket=c.bucket)["Contents"]
        forged = io.BytesIO()
        with zipfile.ZipFile(forged, "w") as zf:
            zf.writestr("handler.py", "def handler(event, context):\n    return 'forged'\n")
        s3.put_object(Bucket=c.bucket, Key=obj["Key"], Body=forged.getvalue())
        b = c.start("b")
        assert body(b, "greet") == "404 function_not_found"
        assert b.http.get("/healthz").json()["cluster"]["not_served"] == ["greet@1"]
        assert "does not hold the code of that digest" in b.log.read_text()
    finally:
        c.close()


def test_deploy_fails_clearly_when_the_artifact_store_is_down(tmp_path: Path) -> None:
    """A revision other nodes could not fetch is never recorded: 503 artifact_store_unavailable, and the
    function does not exist afterwards."""
    env = {"POLYFN_ARTIFACTS_URL": "s3://artifacts", "POLYFN_ARTIFACTS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    s = start_server(tmp_path / "a", env=env)
    try:
        r = s.api.post("/v1/functions", json={"name": "greet", "files": {"handler.py": V1}})
        assert r.status_code == 503, r.text
        assert error_code(r) == "artifact_store_unavailable"
        assert "cannot store the code for the other nodes" in r.json()["error"]["message"]
        assert s.api.get("/v1/functions/greet").status_code == 404
    finally:
        s.stop()


def test_artifact_settings_are_checked_at_start(tmp_path: Path) -> None:
    try:
        start_server(tmp_path / "a", env={"POLYFN_ARTIFACTS_URL": "s3://artifacts"})
    except RuntimeError as e:
        assert "POLYFN_ARTIFACTS_ENDPOINT" in str(e)
    else:
        raise AssertionError("a node with an artifact bucket and no endpoint started")


def test_a_plain_subscription_is_consumed_by_one_node(tmp_path: Path, pg_url: str,
                                                      artifact_store: Server) -> None:
    """MQTT and core NATS (no queue group) give every subscriber every message: in a cluster only the leader
    node subscribes (the other shows `standby`), so each message runs the function once."""
    from .brokers import mqtt_broker, nats_broker
    from .test_brokers import CONSUMER, bodies, mqtt_publish, nats_publish, received

    state, mqtt_dir, nats_dir = tmp_path / "state", tmp_path / "mqtt", tmp_path / "nats"
    for d in (state, mqtt_dir, nats_dir):
        d.mkdir()
    mqtt = mqtt_broker(mqtt_dir).start()
    nats = None
    c = Cluster(tmp_path, pg_url, artifact_store)
    c.env.update({"POLYFN_CRON_LEADER_INTERVAL": "0.2", **HOST_FS})  # the function appends to a file here
    try:
        nats = nats_broker(nats_dir).start()
        a = c.start("a")
        a.deploy("sink", {"handler.py": CONSUMER}, env={"STATE": str(state)})
        b = c.start("b")
        for tid, kind, config in (("m", "mqtt", {"port": mqtt.port, "topic": "room/+/temp", "qos": 1}),
                                  ("n", "nats", {"url": f"nats://127.0.0.1:{nats.port}", "subject": "room.>"})):
            assert b.api.post("/v1/functions/sink/triggers", json={"kind": kind, "config": config, "id": tid}
                              ).status_code == 201

        def states(tid: str) -> list[str]:
            return sorted(s.api.get(f"/v1/triggers/{tid}").json().get("health", {}).get("state", "absent")
                          for s in (a, b))

        for tid in ("m", "n"):
            assert wait_until(lambda tid=tid: states(tid) == ["connected", "standby"], 20), states(tid)
        waiting = [h for h in (s.api.get("/v1/triggers/m").json()["health"] for s in (a, b)) if h["state"] == "standby"]
        assert "leader node" in waiting[0]["message"], waiting
        mqtt_publish(mqtt.port, [(f"room/{i}/temp", f"m{i}") for i in range(5)])
        nats_publish(f"nats://127.0.0.1:{nats.port}", "room.1", [f"n{i}" for i in range(5)])
        want = {f"m{i}" for i in range(5)} | {f"n{i}" for i in range(5)}
        assert wait_until(lambda: bodies(state) == want, 20), received(state)
        time.sleep(1)  # a second subscriber would have delivered its copies by now
        assert len(received(state)) == 10, received(state)

        # The consuming node dies: the other becomes the leader and subscribes.
        leader, other = (a, b) if a.api.get("/v1/triggers/m").json()["health"]["state"] == "connected" else (b, a)
        leader.stop(signal.SIGKILL)
        assert wait_until(lambda: other.api.get("/v1/triggers/m").json()["health"]["state"] == "connected", 20)
        mqtt_publish(mqtt.port, [("room/9/temp", "after")])
        assert wait_until(lambda: "after" in bodies(state), 20), received(state)
    finally:
        c.close()
        mqtt.stop()
        if nats is not None:
            nats.stop()


def test_the_cluster_flag_needs_the_shared_database_and_queue(tmp_path: Path, pg_url: str,
                                                              jetstream_queue: dict[str, str]) -> None:
    """`polyfn serve --cluster` refuses to start as a node that would keep its async jobs or its functions to
    itself, and starts with a PostgreSQL database and a JetStream queue."""
    for env, missing in (({}, ["POLYFN_DATABASE_URL", "POLYFN_QUEUE_URL"]),
                         ({"POLYFN_DATABASE_URL": pg_url}, ["POLYFN_QUEUE_URL"]),
                         (jetstream_queue, ["POLYFN_DATABASE_URL"])):
        try:
            start_server(tmp_path / "bad", "--cluster", env=env)
        except RuntimeError as e:
            assert "cluster mode needs what the nodes share" in str(e) and all(m in str(e) for m in missing), e
            assert "Traceback" not in str(e)
        else:
            raise AssertionError(f"a --cluster node started with {sorted(env)}")
    s = start_server(tmp_path / "good", "--cluster", env={"POLYFN_DATABASE_URL": pg_url, **jetstream_queue})
    try:
        s.deploy("greet", {"handler.py": V1})
        aid = s.api.post("/v1/functions/greet/invoke?mode=async", json={}).json()["activation_id"]
        assert wait_until(lambda: s.activation(aid)["status"] == "success", 20)
    finally:
        s.stop()


def test_with_the_nats_queue_changes_reach_the_other_node_at_once(tmp_path: Path, pg_url: str, artifact_store: Server,
                                                                   jetstream_queue: dict[str, str]) -> None:
    """A node that deploys, adds a trigger or deletes announces it on the queue's NATS connection, and the
    others sync at once: with polling every hour here, only the notice can make them follow (each step is a
    wait on what b serves, never a clock)."""
    c = Cluster(tmp_path, pg_url, artifact_store)
    c.env.update({**jetstream_queue, "POLYFN_SYNC_INTERVAL": "3600"})
    try:
        a, b = c.start("a"), c.start("b")
        a.deploy("fast", {"handler.py": V1})
        assert wait_until(lambda: body(b, "fast") == "one", 10), body(b, "fast")
        a.deploy("fast", {"handler.py": V2})
        assert wait_until(lambda: body(b, "fast") == "two", 10), body(b, "fast")
        r = a.api.post("/v1/functions/fast/triggers", json={"kind": "cron", "id": "fast-yearly",
                                                            "config": {"schedule": "0 0 1 1 *"}})
        assert r.status_code == 201, r.text
        assert wait_until(lambda: b.api.get("/v1/triggers/fast-yearly").status_code == 200, 10)  # b runs it
        assert a.api.delete("/v1/functions/fast").status_code == 200
        assert wait_until(lambda: body(b, "fast") == "404 function_not_found", 10), body(b, "fast")
    finally:
        c.close()


SINK = "def handler(event, context):\n    return [r['dynamodb']['Keys']['pk']['S'] for r in event['Records']]\n"


@pytest.mark.timeout(300)
def test_table_changes_through_either_node_are_delivered_once(tmp_path: Path, pg_url: str,
                                                              artifact_store: Server) -> None:
    """A change trigger in a cluster: items written concurrently through both nodes (one table in the shared
    PostgreSQL) each reach the function once — the leader reads the feed; commit order is the feed's order."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    c = Cluster(tmp_path, pg_url, artifact_store, prefix="code")
    try:
        a, b = c.start("a"), c.start("b")
        a.deploy("sink", {"handler.py": SINK}, flavor="aws", handler="handler.handler")
        ddb = [boto3.client("dynamodb", endpoint_url=n.url, region_name="us-east-1",
                            aws_access_key_id="polyfn-admin", aws_secret_access_key=n.key) for n in (a, b)]
        ddb[0].create_table(TableName="orders", BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        r = a.api.post("/v1/functions/sink/triggers", json={"kind": "dynamodb", "id": "orders-changes",
                                                            "config": {"table": "orders", "start": "TRIM_HORIZON"}})
        assert r.status_code == 201, r.text
        keys = [f"k{i:03d}" for i in range(60)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: ddb[int(k[1:]) % 2].put_item(TableName="orders", Item={"pk": {"S": k}}), keys))

        def delivered() -> list[str]:
            acts = a.api.get("/v1/activations", params={"function": "sink", "limit": 1000}).json()["activations"]
            return sorted(k for act in acts if act["status"] == "success" for k in json.loads(act["result"]))

        assert wait_until(lambda: len(delivered()) >= len(keys), 60), (
            delivered(), [n.api.get("/v1/functions/sink/triggers").json() for n in (a, b)])
        time.sleep(1.5)  # nothing more arrives: no change is delivered twice
        assert delivered() == keys
    finally:
        c.close()
