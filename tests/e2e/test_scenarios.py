"""The seed's seven scenarios as shipped under examples/scenarios/, each deployed the way its README says
(`polyfn deploy -f scenario.yml`, requirements.txt installed at deploy) and driven end to end through the
real components: the object store, the DynamoDB API, Mosquitto, RabbitMQ, cron, the log stream, ffmpeg.

Brokers and tools that are absent make their test skip with the reason (fail under CI=true)."""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Server, wait_until
from .storage_helpers import s3_client

SCENARIOS = REPO / "examples" / "scenarios"
pytestmark = pytest.mark.timeout(900)  # deploys install requirements.txt (scikit-learn's wheels are large)


def need(what: str, ok: bool) -> None:
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is required under CI=true")
        pytest.skip(f"{what} is not available here")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def deploy(server: Server, scenario: str) -> str:
    r = server.cli("deploy", "-f", str(SCENARIOS / scenario / "scenario.yml"), timeout=900)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    return r.stdout


def keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def last_activation(server: Server, name: str) -> dict[str, Any]:
    acts = server.api.get("/v1/activations", params={"function": name}).json()["activations"]
    return server.activation(acts[0]["id"]) if acts else {}


def test_thumbnail(server: Server, tmp_path: Path) -> None:
    from PIL import Image

    out = deploy(server, "thumbnail")
    assert "thumbnail" in out
    s3 = s3_client(server)
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (1600, 1200), "teal").save(photo)
    server.cli("storage", "cp", str(photo), "s3://images/uploads/", check=True)
    assert wait_until(lambda: "thumbs/photo-thumb.jpg" in keys(s3, "images", "thumbs/"), timeout=120), \
        last_activation(server, "thumbnail")
    thumb = Image.open(io.BytesIO(s3.get_object(Bucket="images", Key="thumbs/photo-thumb.jpg")["Body"].read()))
    assert thumb.format == "JPEG" and thumb.size == (800, 600)
    assert keys(s3, "images", "uploads/") == ["uploads/photo.jpg"]  # the original is kept, nothing re-triggered
    deploy(server, "thumbnail")  # a redeploy of the same file keeps the bucket and its one trigger
    trig = json.loads(server.cli("trigger", "list", "--json", check=True).stdout)
    assert [t["function"] for t in trig if t.get("bucket") == "images"] == ["thumbnail"]
