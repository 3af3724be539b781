"""A small client of the node's DynamoDB API (JSON 1.0 over HTTP, SigV4 with polyfn's own signer), so the
CLI needs no AWS SDK: `DbClient(url, key).call("PutItem", {...})`."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from polyfn.auth.sigv4 import sign_headers


class DbError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class DbClient:
    def __init__(self, url: str, key: str, key_id: str = "polyfn-admin", region: str = "us-east-1",
                 timeout: float = 60):
        self.url = url.rstrip("/")
        self.key, self.key_id, self.region = key, key_id, region
        self.http = httpx.Client(timeout=timeout)

    def call(self, op: str, req: dict[str, Any]) -> dict[str, Any]:
        import hashlib

        body = json.dumps(req).encode()
        headers = {"host": urlsplit(self.url).netloc, "content-type": "application/x-amz-json-1.0",
                   "x-amz-target": f"DynamoDB_20120810.{op}"}
        signed = sign_headers("POST", "/", [], headers, self.key_id, self.key, self.region, time.time(),
                              hashlib.sha256(body).hexdigest(), service="dynamodb")
        r = self.http.post(self.url + "/", content=body, headers=signed)
        data = r.json() if r.content else {}
        if r.status_code != 200:
            kind = str(data.get("__type", f"HTTP {r.status_code}")).rsplit("#", 1)[-1]
            raise DbError(kind, str(data.get("message") or data.get("Message") or r.text))
        return data  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()
