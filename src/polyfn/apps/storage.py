"""The app platform's file face: wx.cloud's uploadFile / getTempFileURL / deleteFile / downloadFile.

    POST /app/{env}/storage/upload  {cloudPath, size?, contentType?} → {url, fields, fileID}: a presigned POST
    POST /app/{env}/storage/urls    {fileList: [fileID | {fileID, maxAge}]} → {fileList: [{fileID, tempFileURL, …}]}
    POST /app/{env}/storage/delete  {fileList: [fileID]} → {fileList: [{fileID, status, errMsg}]}

Files live in the app's bucket (`app-{env}` unless set) of the node's object store; a file id is
`cloud://{env}.{bucket}/{cloudPath}`. The client uploads straight to the store with a presigned POST whose
policy pins the key, the size range (`max_upload`: an oversized upload is refused by the store before it
is kept) and the owner stamp `x-amz-meta-openid` (the caller's openid, which the client cannot change).
Reads and deletes are checked against the app's file rule (`AppConfig.files`, `rules.py`) with the file
as `doc`: `{_openid: its owner, path, size}`; a refused file is answered per file (status 403, errCode
`permission_denied`), as wx.cloud answers per file.

The face talks to the store through its S3 API (SigV4, polyfn's own signer) with the app's own key (scope
`invoke`, owned by `app:{env}`), so deletes raise storage events like any other, and an upstream S3 backend
(a cluster) works the same.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from polyfn.apps.http import Request, json_outcome
from polyfn.apps.model import App, Identity
from polyfn.apps.rules import compile_rule
from polyfn.apps.service import AppError
from polyfn.auth import sigv4
from polyfn.invoker import Outcome

GRANT_TTL = 600  # seconds a presigned POST is valid
CORS_XML = (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
            b"<AllowedMethod>HEAD</AllowedMethod><AllowedMethod>POST</AllowedMethod><AllowedMethod>PUT</AllowedMethod>"
            b"<AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds>"
            b"</CORSRule></CORSConfiguration>")
URL_TTL_DEFAULT, URL_TTL_MAX = 3600, 7 * 24 * 3600
MAX_FILES = 50  # files per getTempFileURL / deleteFile call (wx.cloud's limit)
Credentials = Callable[[str], Awaitable[tuple[str, str]]]  # app id → (access key id, secret)


class FileError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class StorageFace:
    def __init__(self, storage_url: Callable[[], str], region: str, credentials: Credentials,
                 clock: Callable[[], float] = time.time):
        self.storage_url = storage_url
        self.region = region
        self.credentials = credentials
        self.clock = clock
        self._client: Any = None  # httpx.AsyncClient, made on first use (httpx costs ~10 % of the start)
        self._buckets: set[str] = set()

    def routes(self) -> dict[tuple[str, str, str], Any]:
        return {("POST", "storage", "upload"): self.upload, ("POST", "storage", "urls"): self.urls,
                ("POST", "storage", "delete"): self.delete}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # -- endpoints ---------------------------------------------------------------------------------------

    async def upload(self, req: Request) -> Outcome:
        ident = req.identity(required=True)
        assert ident is not None
        cloud_path, content_type = req.fields("cloudPath", "contentType")
        key = _cloud_path(cloud_path)
        app = req.app
        size = req.json().get("size")
        if isinstance(size, int) and size > app.config.max_upload:
            raise AppError(413, "file_too_large", f"the file is {size} bytes; app {app.id!r} takes up to "
                                                  f"{app.config.max_upload}")
        akid, secret = await self._ready(app)
        existing = await self._owner(app, key, akid, secret)
        rule = compile_rule(app.config.files.write)
        auth = _auth(ident)
        if existing is not None and not rule.allows(auth, existing):
            raise AppError(403, "permission_denied", f"{cloud_path!r} belongs to another user")
        if not rule.allows(auth, {"_openid": ident.openid, "path": key}):
            raise AppError(403, "permission_denied", f"the app's file rule does not let you write {cloud_path!r}")
        fields = self._post_policy(app, key, ident.openid, akid, secret,
                                   content_type if isinstance(content_type, str) else "")
        return json_outcome({"url": f"{self.storage_url()}/{app.bucket}", "fields": fields,
                             "fileID": file_id(app, key), "expires_in": GRANT_TTL})

    async def urls(self, req: Request) -> Outcome:
        async def temp_url(app: App, key: str, akid: str, secret: str, item: dict[str, Any]) -> dict[str, Any]:
            max_age = item.get("maxAge", URL_TTL_DEFAULT)
            if not isinstance(max_age, int) or not 1 <= max_age <= URL_TTL_MAX:
                raise FileError(400, "invalid_parameter", f"maxAge must be 1..{URL_TTL_MAX} seconds")
            return {"tempFileURL": self._presigned_get(app, key, akid, secret, max_age), "maxAge": max_age}

        return await self._each_file(req, req.identity(), "read", temp_url, {"tempFileURL": ""})

    async def delete(self, req: Request) -> Outcome:
        async def remove(app: App, key: str, akid: str, secret: str, _item: dict[str, Any]) -> dict[str, Any]:
            r = await self._s3("DELETE", app, key, akid, secret)
            if r.status_code >= 300:
                raise FileError(r.status_code, "storage_error", r.text[:300])
            return {}

        return await self._each_file(req, req.identity(required=True), "write", remove, {})

    async def _each_file(self, req: Request, ident: Identity | None, side: str, action: Any,
                         failed: dict[str, Any]) -> Outcome:
        """wx.cloud's per-file answers: each file of `fileList` checked against the app's file rule (`side`:
        read or write), then `action(app, key, akid, secret, item)` for the ones allowed."""
        app = req.app
        akid, secret = await self._ready(app)
        rule = compile_rule(getattr(app.config.files, side))
        out = []
        for item in _file_list(req):
            fid = item.get("fileID") if isinstance(item, dict) else None
            entry: dict[str, Any] = {"fileID": fid}
            try:
                key = parse_file_id(app, fid)
                owner = await self._owner(app, key, akid, secret)
                if owner is None:
                    raise FileError(404, "file_not_found", f"{fid} does not exist")
                if not rule.allows(_auth(ident), owner):
                    raise FileError(403, "permission_denied", f"the app's file rule does not let you {side} it")
                entry.update(await action(app, key, akid, secret, item), status=0, errMsg="ok")
            except FileError as e:
                entry.update(failed, status=e.status, errCode=e.code, errMsg=e.message)
            out.append(entry)
        return json_outcome({"fileList": out})

    # -- the store ---------------------------------------------------------------------------------------

    async def _ready(self, app: App) -> tuple[str, str]:
        if not self.storage_url():
            raise AppError(503, "storage_unavailable", "the node's object store is not running")
        akid, secret = await self.credentials(app.id)
        if app.bucket not in self._buckets:
            r = await self._s3("HEAD", app, "", akid, secret)
            if r.status_code == 404:
                r = await self._s3("PUT", app, "", akid, secret)
                if r.status_code not in (200, 409):
                    raise AppError(502, "storage_error", f"cannot make bucket {app.bucket}: {r.text[:300]}")
            elif r.status_code >= 300:
                raise AppError(502, "storage_error", f"bucket {app.bucket}: HTTP {r.status_code}")
            # Browsers upload with a presigned POST and read with presigned GETs: signatures, not cookies, are
            # the authority, so the app's bucket answers CORS for any origin.
            r = await self._s3("PUT", app, "", akid, secret, query="cors", body=CORS_XML)
            if r.status_code >= 300:
                raise AppError(502, "storage_error", f"cannot set CORS on bucket {app.bucket}: {r.text[:300]}")
            self._buckets.add(app.bucket)
        return akid, secret

    async def _owner(self, app: App, key: str, akid: str, secret: str) -> dict[str, Any] | None:
        """The file as a rule sees it (`_openid`, `path`, `size`), None when it does not exist."""
        r = await self._s3("HEAD", app, key, akid, secret)
        if r.status_code == 404:
            return None
        if r.status_code >= 300:
            raise AppError(502, "storage_error", f"HEAD {key}: HTTP {r.status_code}")
        return {"_openid": r.headers.get("x-amz-meta-openid"), "path": key,
                "size": int(r.headers.get("content-length", "0") or 0)}

    async def _s3(self, method: str, app: App, key: str, akid: str, secret: str, query: str = "",
                  body: bytes = b"") -> Any:
        base = self.storage_url()
        path = "/" + quote(app.bucket) + ("/" + quote(key, safe="/~") if key else "")
        host = urlsplit(base).netloc
        extra = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()} if body else {}
        headers = sigv4.sign_headers(method, path, [(query, "")] if query else [], {"host": host, **extra}, akid,
                                     secret, self.region, self.clock(), hashlib.sha256(body).hexdigest())
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        return await self._client.request(method, base + path + (f"?{query}" if query else ""), headers=headers,
                                         content=body)

    def _post_policy(self, app: App, key: str, openid: str, akid: str, secret: str, content_type: str) -> dict[str, str]:
        now = self.clock()
        when = sigv4.amz_date(now)
        credential = f"{akid}/{when[:8]}/{self.region}/s3/aws4_request"
        expiration = datetime.datetime.fromtimestamp(now + GRANT_TTL, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        fields = {"key": key, "x-amz-algorithm": sigv4.ALGORITHM, "x-amz-credential": credential, "x-amz-date": when,
                  "x-amz-meta-openid": openid}
        conditions: list[Any] = [{"bucket": app.bucket}, *({k: v} for k, v in fields.items()),
                                 ["content-length-range", 0, app.config.max_upload],
                                 ["starts-with", "$Content-Type", ""]]
        fields["Content-Type"] = content_type or "application/octet-stream"  # the client may name another
        policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": conditions}).encode()).decode()
        key_bytes = sigv4.signing_key(secret, when[:8], self.region, "s3")
        fields["policy"] = policy
        fields["x-amz-signature"] = hmac.new(key_bytes, policy.encode(), hashlib.sha256).hexdigest()
        return fields

    def _presigned_get(self, app: App, key: str, akid: str, secret: str, max_age: int) -> str:
        base = self.storage_url()
        path = "/" + quote(app.bucket) + "/" + quote(key, safe="/~")
        query = sigv4.presign_query("GET", path, urlsplit(base).netloc, akid, secret, self.region, self.clock(), max_age)
        return f"{base}{path}?{urlencode(query, quote_via=quote)}"


def file_id(app: App, key: str) -> str:
    return f"cloud://{app.id}.{app.bucket}/{key}"


def parse_file_id(app: App, fid: Any) -> str:
    prefix = f"cloud://{app.id}.{app.bucket}/"
    if not isinstance(fid, str) or not fid.startswith(prefix):
        raise FileError(400, "invalid_file_id", f"{fid!r} is not a file of app {app.id!r} ({prefix}…)")
    return _cloud_path(fid[len(prefix):], FileError)


def _cloud_path(path: Any, error: type[Exception] = AppError) -> str:
    ok = isinstance(path, str) and 0 < len(path.encode()) <= 1024 and not path.startswith("/") \
        and all(seg not in ("", ".", "..") for seg in path.split("/")) and not any(ord(c) < 32 for c in path)
    if not ok:
        raise error(400, "invalid_cloud_path", f"cloudPath {path!r} must be a relative path like 'photos/a.jpg' "
                                               "(no leading '/', no '..', at most 1024 bytes)")
    return path


def _file_list(req: Request) -> list[Any]:
    (items,) = req.fields("fileList")
    if not isinstance(items, list) or not items or len(items) > MAX_FILES:
        raise AppError(400, "invalid_parameter", f"fileList must be a list of 1..{MAX_FILES} file ids")
    return [{"fileID": i} if isinstance(i, str) else i for i in items]


def _auth(ident: Identity | None) -> dict[str, Any] | None:
    return ident.rule_auth() if ident is not None else None
