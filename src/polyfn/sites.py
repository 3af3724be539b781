"""Static hosting: `polyfn sites deploy DIR --name NAME` serves a built page at `/sites/NAME/` from the node,
so an app's web side and its functions come from one place (one origin: no CORS to configure).
A site of a namespace other than `default` is held as `NS~NAME` (as functions are: tenancy.py) and served at
`/sites/NS/NAME/`; `/sites/NAME/` is the default namespace's, looked up first.

A deploy replaces the site's files at once (one database row: its files as a deterministic zip and their
digest); every node unpacks a digest once into `<data dir>/sites/<name>/<digest>/` and serves from there, so a
cluster serves the same files from every node. Answers:

* `cache-control`: HTML `no-cache` (revalidated each time, so a deploy shows at once); file names carrying a
  content hash (`app.3f9a1c2e.js`) `public, max-age=31536000, immutable`; other files `public, max-age=300`.
  An `ETag` per file (its SHA-256) answers `If-None-Match` with 304.
* SPA fallback (on by default): a path that names no file and has no extension (`/sites/shop/orders/42`)
  answers the site's `index.html`; a missing file with an extension is a 404. `/sites/NAME` redirects to
  `/sites/NAME/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import delete, select, update

from polyfn.deploy import archive
from polyfn.deploy.artifacts import to_zip
from polyfn.store.tables import sites
from polyfn.tenancy import DEFAULT, SEP, qualify, split
from polyfn.tenancy import NAME_RE as NS_RE

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_SITE_BYTES = 100 * 1024 * 1024
MAX_SITE_FILES = 10_000
_HASHED = re.compile(r"[.\-_][0-9a-fA-F]{8,}\.[A-Za-z0-9]+$")
_CACHE_FOR = 2.0  # seconds a site's current digest is trusted before the database is asked again


class SiteError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Sites:
    def __init__(self, store: Any, root: Path, clock: Callable[[], float] = time.time):
        self.store = store
        self.root = root
        self.clock = clock
        self._current: dict[str, tuple[float, str, bool, Path]] = {}  # name → (checked at, digest, spa, dir)
        self._etags: dict[Path, str] = {}
        self._lock = asyncio.Lock()

    # -- control -----------------------------------------------------------------------------------------

    async def deploy(self, name: str, files: dict[str, bytes], spa: bool = True,
                     namespace: str = DEFAULT) -> dict[str, Any]:
        if not NAME_RE.match(name):
            raise SiteError(400, "invalid_name", f"site name {name!r}: 1-63 characters a-z, 0-9 and '-', "
                                                 "starting with a letter")
        files = archive.check_files(files, MAX_SITE_BYTES, MAX_SITE_FILES)
        if "index.html" not in files:
            raise SiteError(400, "no_index", "a site needs an index.html at its top level")
        digest = archive.digest(files)
        blob = await asyncio.to_thread(to_zip, files)
        local, name = name, qualify(namespace, name)
        now = self.clock()
        values = {"digest": digest, "archive": blob, "spa": spa, "files": len(files),
                  "size": sum(len(v) for v in files.values()), "updated_at": now}
        async with self.store._writer() as conn:
            res = await conn.execute(update(sites).where(sites.c.name == name).values(**values))
            if not res.rowcount:
                await conn.execute(sites.insert().values(name=name, created_at=now, **values))
        self._current.pop(name, None)
        return {"name": local, "digest": digest, "files": len(files), "size": values["size"], "spa": spa,
                "url": url(name)}

    async def list(self, namespace: str = DEFAULT) -> list[dict[str, Any]]:
        cols = [sites.c.name, sites.c.digest, sites.c.spa, sites.c.files, sites.c.size, sites.c.created_at,
                sites.c.updated_at]
        mine = sites.c.name.not_like(f"%{SEP}%") if namespace == DEFAULT else sites.c.name.like(f"{namespace}{SEP}%")
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(*cols).where(mine).order_by(sites.c.name))).mappings().all()
        return [{**dict(r), "name": split(r["name"])[1], "url": url(r["name"])} for r in rows]

    async def delete(self, name: str, namespace: str = DEFAULT) -> bool:
        name = qualify(namespace, name)
        async with self.store._writer() as conn:
            res = await conn.execute(delete(sites).where(sites.c.name == name))
        self._current.pop(name, None)
        return bool(res.rowcount)

    async def forget_namespace(self, namespace: str) -> dict[str, Any]:
        """A deleted namespace's sites go."""
        gone = [s["name"] for s in await self.list(namespace)]
        for name in gone:
            await self.delete(name, namespace)
        return {"sites": gone}

    # -- serving -----------------------------------------------------------------------------------------

    async def _site(self, name: str) -> tuple[bool, Path] | None:
        now = self.clock()
        hit = self._current.get(name)
        if hit is not None and now - hit[0] < _CACHE_FOR:
            return hit[2], hit[3]
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(sites.c.digest, sites.c.spa).where(sites.c.name == name))).first()
        if row is None:
            self._current.pop(name, None)
            return None
        digest, spa = row
        where = self.root / name / digest
        if not where.is_dir():
            async with self._lock:  # one unpack per digest, however many requests wait for it
                if not where.is_dir():
                    async with self.store.engine.connect() as conn:
                        blob = (await conn.execute(select(sites.c.archive).where(sites.c.name == name,
                                                                                   sites.c.digest == digest))).scalar()
                    if blob is None:  # replaced in between: the next request finds the new one
                        return None
                    files = archive.files_from_zip(blob, MAX_SITE_BYTES, MAX_SITE_FILES)
                    await asyncio.to_thread(archive.materialise, files, where)
        self._current[name] = (now, digest, bool(spa), where)
        return bool(spa), where

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        status, headers, body = await self.answer(scope)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def answer(self, scope: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        rest = scope["path"][len("/sites/"):]
        name, slash, sub = rest.partition("/")
        if scope["method"] not in ("GET", "HEAD"):
            return 405, [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8")], \
                b"sites are read with GET\n"
        site = await self._site(name) if NAME_RE.match(name) else None
        if site is None and slash and NS_RE.match(name) and name != DEFAULT:  # /sites/NS/NAME/…: a namespace's
            local, slash, sub = sub.partition("/")
            name = qualify(name, local)
            site = await self._site(name) if NAME_RE.match(local) else None
        if site is None:
            return 404, [(b"content-type", b"text/plain; charset=utf-8")], f"no site {split(name)[1]!r}\n".encode()
        if not slash:
            return 308, [(b"location", url(name).encode())], b""
        spa, where = site
        path = unquote(sub) or "index.html"
        if path.endswith("/"):
            path += "index.html"
        file = _inside(where, path)
        if file is None or not file.is_file():
            if spa and "." not in path.rsplit("/", 1)[-1]:
                file = where / "index.html"
            else:
                return 404, [(b"content-type", b"text/plain; charset=utf-8")], f"no file {path!r}\n".encode()
        body = await asyncio.to_thread(file.read_bytes)
        etag = self._etags.get(file)
        if etag is None:
            etag = self._etags[file] = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = [(b"etag", etag.encode()), (b"cache-control", _cache_control(file.name)),
                   (b"content-type", _content_type(file.name)), (b"x-content-type-options", b"nosniff")]
        inm = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        if inm is not None and etag.encode() in [t.strip() for t in inm.split(b",")]:
            return 304, headers, b""
        return 200, headers, body


def url(held: str) -> str:
    """Where a site (by its held name) is served."""
    ns, name = split(held)
    return f"/sites/{name}/" if ns == DEFAULT else f"/sites/{ns}/{name}/"


def _inside(root: Path, path: str) -> Path | None:
    """`root/path` when it stays inside root (no `..`, no absolute paths)."""
    try:
        rel = archive.safe_relpath(path)
    except Exception:
        return None
    return root / rel


def _cache_control(filename: str) -> bytes:
    if filename.endswith((".html", ".htm")):
        return b"no-cache"
    if _HASHED.search(filename):
        return b"public, max-age=31536000, immutable"
    return b"public, max-age=300"


def _content_type(filename: str) -> bytes:
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return kind.encode()
