"""The S3 wire: one request as the handlers see it, request bodies (plain and aws-chunked), S3's XML, and
the few ways an answer is sent. No S3 semantics here beyond the encoding."""

from __future__ import annotations

import contextvars
import datetime as _dt
import email.utils
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from polyfn.storage.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
OWNER_ID = "polyfn"
OWNER = f"<Owner><ID>{OWNER_ID}</ID><DisplayName>{OWNER_ID}</DisplayName></Owner>"
MAX_XML_BODY = 1024 * 1024
XML_CT = [(b"content-type", b"application/xml")]

Send = Callable[[Any], Any]

#: True while answering a request signed the OSS way (oss2): XML without the S3 namespace, `x-oss-` headers.
OSS_DIALECT: contextvars.ContextVar[bool] = contextvars.ContextVar("polyfn_oss_dialect", default=False)


class ClientGone(Exception):
    pass


def scope_has_body(scope: dict[str, Any]) -> bool:
    for k, v in scope["headers"]:
        if (k == b"content-length" and v != b"0") or k == b"transfer-encoding":
            return True
    return False


#: the last instant a date can be answered for (9999-12-31T23:59:59Z)
LAST_INSTANT = 253402300799


def iso(ts: float) -> str:
    """As S3 and OSS write a date. A stored instant beyond the year 9999 (a default retention of 10^20 days, kept
    before such periods were refused) is answered as the last one, not a 500 on every read of the object."""
    return _dt.datetime.fromtimestamp(min(ts, LAST_INSTANT), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def parse_iso(value: str) -> float | None:
    try:
        d = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.UTC)
    try:
        d.astimezone(_dt.UTC)  # 9999-12-31T23:59:59-14:00 is in the year 10000: no date S3 can answer
    except OverflowError:
        return None
    return d.timestamp()


def invalid_uri() -> S3Error:
    """A request whose path or query decodes (`%XX`) to bytes that are not UTF-8: AWS answers this, before the
    signature is looked at (a HEAD of `/bucket/%AE%8A-` is `400 InvalidURI` there, gaul/s3proxy#201)."""
    return S3Error(400, "InvalidURI", "Couldn't parse the specified URI.")


def parse_query(qs: bytes) -> list[tuple[str, str]]:
    out = []
    if qs:
        try:
            for part in qs.decode("latin-1").split("&"):
                if part:
                    k, _, v = part.partition("=")
                    out.append((unquote(k, errors="strict"), unquote(v, errors="strict")))
        except UnicodeDecodeError:
            raise invalid_uri() from None
    return out


async def body_chunks(receive: Callable[[], Any]) -> AsyncIterator[bytes]:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        body = msg.get("body", b"")
        if body:
            yield body
        if not msg.get("more_body"):
            return


async def read_all(receive: Callable[[], Any], limit: int = MAX_XML_BODY) -> bytes:
    buf = bytearray()
    async for chunk in body_chunks(receive):
        buf += chunk
        if len(buf) > limit:
            raise S3Error(400, "MaxMessageLengthExceeded", "Your request was too big.")
    return bytes(buf)


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def aws_chunked(chunks: AsyncIterator[bytes], trailers: dict[str, str] | None = None) -> AsyncIterator[bytes]:
    """Decode `Content-Encoding: aws-chunked` (STREAMING-* payloads): `<hex>[;ext]\\r\\n<data>\\r\\n` … `0…`,
    then trailing headers (`x-amz-checksum-crc32:…`), which are put into `trailers` when given.

    Chunk signatures are not verified (the seed signature covers the headers); see docs/storage.md.
    """
    buf = bytearray()
    it = chunks.__aiter__()
    need = -1  # bytes of data still to pass through for the current chunk; -1 = expecting a header line

    async def more() -> bool:
        try:
            buf.extend(await it.__anext__())
            return True
        except StopAsyncIteration:
            return False

    while True:
        if need < 0:
            while b"\r\n" not in buf:
                if not await more():
                    raise S3Error(400, "IncompleteBody", "the aws-chunked body ended early")
            line, _, rest = bytes(buf).partition(b"\r\n")
            buf[:] = rest
            try:
                need = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise S3Error(400, "InvalidRequest", "malformed aws-chunked body") from None
            if need == 0:
                while await more():
                    pass
                if trailers is not None:
                    for tl in bytes(buf).split(b"\r\n"):
                        name, sep, value = tl.decode("latin-1").partition(":")
                        if sep and name.strip():
                            trailers[name.strip().lower()] = value.strip()
                return
            continue
        while len(buf) < need + 2:
            if len(buf) >= need and need > 0:
                break
            if not await more():
                raise S3Error(400, "IncompleteBody", "the aws-chunked body ended early")
        take = min(need, len(buf))
        if take:
            yield bytes(buf[:take])
            del buf[:take]
            need -= take
        if need == 0:
            while len(buf) < 2:
                if not await more():
                    raise S3Error(400, "IncompleteBody", "the aws-chunked body ended early")
            del buf[:2]
            need = -1


def xml(tag: str, inner: str) -> bytes:
    if OSS_DIALECT.get():
        return f"{XML_DECL}<{tag}>{inner}</{tag}>".encode()
    return f'{XML_DECL}<{tag} xmlns="{NS}">{inner}</{tag}>'.encode()


def e(s: str) -> str:
    return escape(s)


def malformed(message: str = "The XML you provided was not well-formed or did not validate against our published "
              "schema.") -> S3Error:
    return S3Error(400, "MalformedXML", message)


def parse_xml(body: bytes) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise malformed() from None
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def virtual_bucket(host: str, domains: tuple[str, ...]) -> str:
    """The bucket named by a virtual-host style `Host` (`images.localhost:9000` → `images`), else ''."""
    if not host or host[0] == "[":  # an IPv6 literal names no bucket
        return ""
    name = host.partition(":")[0].lower().rstrip(".")
    for d in domains:
        if name.endswith(d) and len(name) > len(d) + 1 and name[-len(d) - 1] == ".":
            return name[:-len(d) - 1]
    return ""


class Request:
    """One S3 request: method, path-style bucket and key, query, lower-case headers, the body's receive."""

    __slots__ = ("bucket", "client_ip", "headers", "key", "method", "policy_allows", "q", "query", "raw_path",
                 "receive", "sent_path")

    def __init__(self, scope: dict[str, Any], receive: Callable[[], Any], domains: tuple[str, ...] = ()) -> None:
        self.method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode()
        self.sent_path = raw.decode("latin-1")  # as the client sent (and SigV4-signed) it
        hdrs: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            try:  # botocore sends non-ASCII header values (metadata) as UTF-8 and signs them so
                val = v.decode("utf-8")
            except UnicodeDecodeError:
                val = v.decode("latin-1")
            hdrs[name] = f"{hdrs[name]},{val}" if name in hdrs else val
        self.headers = hdrs
        vhost = virtual_bucket(hdrs.get("host", ""), domains) if domains else ""
        # path style from here on (`/bucket/key`): routing, SigV2/OSS resources and the s3 backend use it
        self.raw_path = f"/{vhost}{self.sent_path}" if vhost else self.sent_path
        self.query = parse_query(scope.get("query_string", b""))
        self.q = dict(self.query)
        try:
            path = unquote(self.raw_path, errors="strict")
        except UnicodeDecodeError:
            raise invalid_uri() from None
        bucket, _, key = path.lstrip("/").partition("/")
        self.bucket = bucket
        self.key = key
        client = scope.get("client")
        self.client_ip = client[0] if client else ""
        self.receive = receive
        self.policy_allows = False  # the bucket's policy allows this (unsigned) request

    @property
    def level(self) -> str:
        """`service` (no bucket), `bucket` or `object`: the first axis of the route table."""
        return "object" if self.key else ("bucket" if self.bucket else "service")


def parse_range(value: str, size: int) -> tuple[int, int, int]:
    """(start, end exclusive, status) for a `Range` header; multiple ranges are ignored (whole object)."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return 0, size, 200
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise ValueError
            start, end = max(size - n, 0), size
        else:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
            if int(last or size) < start:
                return 0, size, 200
    except ValueError:
        return 0, size, 200
    if start >= size:
        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable", ActualObjectSize=str(size))
    return start, end, 206


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"",
                  head: bool = False) -> None:
    if not head:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def respond_xml(send: Send, tag: str, inner: str, status: int = 200,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await respond(send, status, [*XML_CT, *(headers or [])], xml(tag, inner))
