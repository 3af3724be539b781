"""Helpers shared by the storage e2e tests: boto3 clients for a running server's object store."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config


def storage_info(server: Any) -> dict[str, Any]:
    r = server.api.get("/v1/storage")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["enabled"], info
    return info


def new_key(server: Any, name: str = "test") -> dict[str, str]:
    r = server.api.post("/v1/storage/keys", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


def s3_client(server: Any, key: dict[str, str] | None = None, **config: Any) -> Any:
    """boto3's S3 client, unmodified, pointed at the server's storage port."""
    info = storage_info(server)
    key = key or new_key(server)
    return boto3.client("s3", endpoint_url=info["endpoint"], aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"], region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, **config))


def storage_url(server: Any) -> str:
    return json.loads((server.data_dir / "server.json").read_text())["storage_url"]


def code(exc: Any) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a `pytest.raises(ClientError)` result."""
    err = exc.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]
