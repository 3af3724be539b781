"""Code artifacts: where a deploy leaves a revision's code so that every node can run it.

A revision is recorded in the database with its code's digest; the code itself is materialised under the
deploying node's data dir. On one node (the embedded default) that is all there is. In a cluster (nodes
sharing a PostgreSQL database, DESIGN.md §5) the other nodes need the files too: with `POLYFN_ARTIFACTS_URL
=s3://bucket[/prefix]` every deploy also puts the code, as `<prefix>/<sha256>.zip`, into that bucket of any
S3 (AWS, MinIO, SeaweedFS, or a polyfn node's own storage API), and a node that has to serve a revision
whose code it does not have fetches it from there (`Deployer.localise`).

The archive is keyed by the code's digest (`archive.digest`), so it is written once however many functions
or revisions share it, and what a node fetches is checked against that digest before it is used. The
client is polyfn's own SigV4 signer over httpx (the one the storage proxy uses), not an SDK.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from polyfn.auth import sigv4
from polyfn.config import Settings
from polyfn.deploy import archive


class ArtifactError(Exception):
    """The artifact store could not be reached, refused us, or returned something that is not the code."""


def to_zip(files: dict[str, bytes]) -> bytes:
    """A deterministic zip of `files` (sorted names, fixed timestamps): same files, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name])
    return buf.getvalue()


class S3Artifacts:
    """Code archives in an S3 bucket, path-style addressing (works with every S3, virtual hosts or not)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        url = urlsplit(settings.artifacts_url)
        if url.scheme != "s3" or not url.netloc:
            raise ValueError(f"POLYFN_ARTIFACTS_URL must look like s3://bucket[/prefix], not {settings.artifacts_url!r}")
        if not settings.artifacts_endpoint:
            raise ValueError("POLYFN_ARTIFACTS_URL needs POLYFN_ARTIFACTS_ENDPOINT (the S3 endpoint URL)")
        self.bucket = url.netloc
        self.prefix = url.path.strip("/")
        self.endpoint = settings.artifacts_endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.access_key = settings.artifacts_access_key_id
        self.secret = settings.artifacts_secret_access_key
        self.region = settings.artifacts_region
        self.max_size = settings.max_code_size
        self.max_files = settings.max_code_files
        self.clock = clock
        import httpx  # (not at import: only a cluster with an artifact store needs it)

        self._httpx = httpx
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(60.0))

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''} at {self.endpoint}"

    def _key(self, sha: str) -> str:
        return f"{self.prefix}/{sha}.zip" if self.prefix else f"{sha}.zip"

    def _path(self, sha: str) -> str:
        return "/" + quote(self.bucket) + "/" + quote(self._key(sha))

    def _where(self, sha: str) -> str:
        return f"s3://{self.bucket}/{self._key(sha)} at {self.endpoint}"

    async def _request(self, method: str, sha: str, body: bytes = b"") -> Any:
        path = self._path(sha)
        payload = hashlib.sha256(body).hexdigest() if method == "PUT" else sigv4.UNSIGNED
        headers = sigv4.sign_headers(method, path, [], {"host": self.host}, self.access_key, self.secret,
                                     self.region, self.clock(), payload=payload)
        headers.pop("host", None)
        try:
            return await self._http.request(method, self.endpoint + path, headers=headers, content=body or None)
        except self._httpx.HTTPError as e:
            raise ArtifactError(f"{method} {self._where(sha)}: {type(e).__name__}: {e}") from None

    async def put(self, sha: str, files: dict[str, bytes]) -> None:
        """Store the code of digest `sha` (once: an archive already there is left alone)."""
        if (await self._request("HEAD", sha)).status_code == 200:
            return
        r = await self._request("PUT", sha, to_zip(files))
        if r.status_code != 200:
            raise ArtifactError(f"PUT {self._where(sha)} answered {r.status_code}: {r.text[:300]}")

    async def get(self, sha: str) -> dict[str, bytes]:
        """The files of digest `sha`, checked against it."""
        r = await self._request("GET", sha)
        if r.status_code == 404:
            raise ArtifactError(f"no archive {self._where(sha)} (deployed by a node without POLYFN_ARTIFACTS_URL?)")
        if r.status_code != 200:
            raise ArtifactError(f"GET {self._where(sha)} answered {r.status_code}: {r.text[:300]}")
        files = archive.files_from_zip(r.content, self.max_size, self.max_files)
        if archive.digest(files) != sha:
            raise ArtifactError(f"{self._where(sha)} does not hold the code of that digest")
        return files

    async def close(self) -> None:
        await self._http.aclose()


def from_settings(settings: Settings) -> S3Artifacts | None:
    """The configured artifact store, or None (code lives in this node's data dir only)."""
    return S3Artifacts(settings) if settings.artifacts_url else None
