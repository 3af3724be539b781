"""Browser uploads: `POST /bucket` with a multipart/form-data body and a signed policy document (boto3's
`generate_presigned_post`, HTML forms).

The form's fields come first; the one named `file` carries the object and is streamed into the store as it
arrives (fields after it are ignored, as on S3). Before a byte of it is stored, the policy is checked: its
signature (V4 `x-amz-signature`, or V2 `signature` with `AWSAccessKeyId`), its expiration, and that every
field satisfies a condition (`{"field": value}`, `["eq"|"starts-with", "$field", value]`) and every
condition a field; `content-length-range` is enforced while the file streams. Without a policy, only a
public-read-write bucket takes the upload. The answer follows `success_action_redirect` (303) or
`success_action_status` (200, 201 with the PostResponse XML, 204 by default).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from polyfn import jsontext
from polyfn.auth import sigv4 as v4
from polyfn.auth import sts
from polyfn.storage import checksums, sigv4
from polyfn.storage.acl import public_grant
from polyfn.storage.bucket_config import parse_tagging
from polyfn.storage.errors import S3Error, access_denied, invalid_argument
from polyfn.storage.model import PutChecks, validate_key
from polyfn.storage.wire import XML_CT, XML_DECL, Request, Send, body_chunks, e, parse_iso, respond
from polyfn.storage.write_request import encryption, header_safe, new_info, sse_headers

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity

MAX_FIELDS_BYTES = 64 * 1024
#: Fields that need no condition in the policy.
_FREE = {"file", "policy", "x-amz-signature", "signature", "awsaccesskeyid", "x-amz-security-token"}


def invalid_policy(message: str) -> S3Error:
    return S3Error(400, "InvalidPolicyDocument", f"Invalid Policy: {message}")


def _denied(message: str) -> S3Error:
    return access_denied(f"Invalid according to Policy: {message}")


class Form:
    """Pulls the request body through python-multipart until the `file` part starts, then streams it."""

    def __init__(self, req: Request) -> None:
        ctype, params = parse_options_header(req.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise S3Error(412, "PreconditionFailed", "Bucket POST must be of the enclosure-type multipart/form-data")
        self.fields: dict[str, str] = {}  # lower-case name → value
        self.names: dict[str, str] = {}  # lower-case name → as sent
        self.filename = ""
        self.file_type = ""
        self.in_file = False
        self.file_started = False
        self.done = False
        self._name = ""
        self._value = bytearray()
        self._hfield = bytearray()
        self._hvalue = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._pending: list[bytes] = []
        self._size = 0
        self._chunks = body_chunks(req.receive).__aiter__()
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_part_end": self._end,
            "on_header_field": lambda d, s, t: self._hfield.extend(d[s:t]),
            "on_header_value": lambda d, s, t: self._hvalue.extend(d[s:t]),
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
            "on_end": self._finish})

    def _begin(self) -> None:
        self._headers, self._value, self._name = {}, bytearray(), ""

    def _header_end(self) -> None:
        self._headers[bytes(self._hfield).lower()] = bytes(self._hvalue)
        self._hfield, self._hvalue = bytearray(), bytearray()

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._name.lower() == "file" and not self.file_started:
            self.in_file = self.file_started = True
            self.filename = params.get(b"filename", b"").decode("utf-8", "replace")
            if b"content-type" in self._headers:
                self.file_type = self._headers[b"content-type"].decode("latin-1")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self._pending.append(bytes(data[start:end]))
        elif not self.file_started:
            self._value.extend(data[start:end])
            self._size += end - start
            if self._size > MAX_FIELDS_BYTES:
                raise invalid_argument("the form's fields are too large")

    def _end(self) -> None:
        if self.in_file:
            self.in_file = False
        elif not self.file_started and self._name:
            self.fields[self._name.lower()] = self._value.decode("utf-8", "replace")
            self.names[self._name.lower()] = self._name

    def _finish(self) -> None:
        self.done = True

    async def _feed(self) -> bool:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            return False
        try:
            self.parser.write(chunk)
        except MultipartParseError:
            raise S3Error(400, "MalformedPOSTRequest", "The body of your POST request is not well-formed "
                          "multipart/form-data.") from None
        return True

    async def read_fields(self) -> None:
        while not self.file_started:
            if not await self._feed():
                raise S3Error(400, "InvalidArgument", "POST requires exactly one file upload per request.",
                              ArgumentName="file", ArgumentValue="0")

    async def file(self, low: int, high: int) -> AsyncIterator[bytes]:
        got = 0
        while True:
            while self._pending:
                chunk = self._pending.pop(0)
                got += len(chunk)
                if got > high:
                    raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
                yield chunk
            if not self.in_file and self.file_started:
                break
            if not await self._feed():
                if self.in_file:
                    raise S3Error(400, "IncompleteBody", "the multipart body ended inside the file")
                break
        if got < low:
            raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size")
        while await self._feed():  # the fields after the file are ignored
            pass


def _verify_signature(app: S3Context, f: dict[str, str], policy_b64: str) -> Any:
    """The key that signed the policy (V4 or V2); 403 when the signature is missing or wrong."""
    if "x-amz-signature" in f:
        cred = f.get("x-amz-credential", "")
        try:
            akid, date, region, service, _ = cred.split("/")
        except ValueError:
            raise _denied("malformed x-amz-credential") from None
        if f.get("x-amz-algorithm") != v4.ALGORITHM:
            raise invalid_argument("x-amz-algorithm must be AWS4-HMAC-SHA256")
        secret, key = _lookup(app, akid)
        want = hmac.new(v4.signing_key(secret, date, region, service), policy_b64.encode(), hashlib.sha256).hexdigest()
        if not v4.same(want, f["x-amz-signature"]):
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                          "signature you provided.")
        return key
    if "signature" not in f or "awsaccesskeyid" not in f:
        raise invalid_argument("Bucket POST with a policy must contain the signature and AWSAccessKeyId fields")
    secret, key = _lookup(app, f["awsaccesskeyid"])
    want = base64.b64encode(hmac.new(secret.encode(), policy_b64.encode(), hashlib.sha1).digest()).decode()
    if not v4.same(want, f["signature"]):
        raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                      "signature you provided.")
    return key


def _lookup(app: S3Context, akid: str) -> tuple[str, Any]:
    try:
        return v4.resolve(app.lookup, akid)
    except v4.SigV4Error as err:
        raise sigv4.s3_error(err) from None


def check_policy(policy: dict[str, Any], fields: dict[str, str], bucket: str, now: float) -> tuple[int, int]:
    """Check the form against its policy document; the allowed (min, max) size of the file."""
    exp = policy.get("expiration") if isinstance(policy, dict) else None
    if not isinstance(exp, str):
        raise invalid_policy("Policy missing expiration.")
    when = parse_iso(exp) if "T" in exp else None
    if when is None:
        raise invalid_policy("Invalid Policy: Invalid 'expiration' value.")
    if when < now:
        raise _denied("Policy expired.")
    conds = policy.get("conditions")
    if not isinstance(conds, list):
        raise invalid_policy("Policy missing conditions.")
    values = {**fields, "bucket": bucket}
    covered = set()
    low, high = 0, 1 << 62
    for c in conds:
        if isinstance(c, dict) and len(c) == 1:
            (name, want), op = next(iter(c.items())), "eq"
        elif isinstance(c, list) and len(c) == 3 and c[0] == "content-length-range":
            try:
                low, high = int(c[1]), int(c[2])
            except (TypeError, ValueError, OverflowError):  # (OverflowError: 1e400 in JSON is infinity)
                raise invalid_argument("Policy Condition failed: content-length-range") from None
            continue
        elif isinstance(c, list) and len(c) == 3 and isinstance(c[0], str) and isinstance(c[1], str):
            op, name, want = c[0].lower(), c[1].removeprefix("$"), c[2]
        else:
            raise invalid_policy(f"Invalid Simple-Condition: {c!r}")
        name = name.lower()
        got = values.get(name)
        if got is None and op == "starts-with" and want == "":
            got = ""  # `starts-with ""` allows any value, none included (a form need not send the field)
        ok = got is not None and (got == want if op == "eq" else got.startswith(str(want)) if op == "starts-with"
                                  else False)
        if not ok:
            raise _denied(f'Policy Condition failed: ["{op}", "${name}", "{want}"]')
        covered.add(name)
    extra = [n for n in fields if n not in covered and n not in _FREE
             and not n.startswith(("x-ignore-", checksums.HEADER))]
    if extra:
        raise _denied(f"Extra input fields: {', '.join(extra)}")
    return low, high


async def post_object(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    form = Form(req)
    await form.read_fields()
    f = form.fields
    bucket = app.backend.bucket(req.bucket)
    key_t = f.get("key")
    if not key_t:
        raise invalid_argument("Bucket POST must contain a field named 'key'.")
    key = key_t.replace("${filename}", form.filename)
    validate_key(key)
    low, high = 0, app.max_object_size
    signer = None
    if "policy" in f:
        try:
            policy = jsontext.loads(base64.b64decode(f["policy"]))
        except ValueError:
            raise invalid_argument("Invalid Policy: the policy is not base64-encoded JSON") from None
        signer = _verify_signature(app, f, f["policy"])
        why = sts.refusal(signer, "PUT", req.bucket, key, {}, f)  # temporary credentials: their bucket and prefix
        if why is not None:
            raise access_denied(f"Access Denied: {why}")
        low, high = check_policy(policy, {**f, "key": key}, req.bucket, app.clock())
        high = min(high, app.max_object_size)
    elif not public_grant(bucket, bucket.acl, "WRITE"):
        raise access_denied("Access Denied: a POST upload needs a signed policy (or a public-read-write bucket)")
    req.key = key
    fake = {k: v for k, v in f.items() if k.startswith(("x-amz-meta-", "x-amz-server-side-encryption", "x-amz-acl",
                                                          "x-amz-storage-class"))
            or k in ("cache-control", "content-disposition", "content-encoding", "expires")}
    if "acl" in f:
        fake["x-amz-acl"] = f["acl"]
    ctype = f.get("content-type") or form.file_type or "binary/octet-stream"
    fake["content-type"] = ctype
    saved, req.headers = req.headers, fake
    try:
        info = new_info(app, req, bucket)
        enc = encryption(app, fake, bucket)
    finally:
        req.headers = saved
    if "tagging" in f:
        info.tags = parse_tagging(f["tagging"].encode(), 10)
    if signer is not None and ident is None:
        ident_function = getattr(signer, "owner", None) or ""
        if ident_function and app.notifications is not None:
            app.notifications.check_loop(req.bucket, key, "created", ident_function)
    given = checksums.from_headers(f)
    for algo, value in given.items():
        checksums.decode(algo, value)
    redirect = f.get("success_action_redirect") or f.get("redirect")
    if redirect and not header_safe(redirect):  # refused before a byte is stored, not after (a dropped answer)
        raise invalid_argument("success_action_redirect may not contain control characters")
    info = await app.backend.put_object(req.bucket, key, form.file(low, high), info, PutChecks(checksums=given),
                                        enc)
    await app.emit("created", req.bucket, key, info, req.client_ip)
    etag = f'"{info.etag}"'
    hdrs = [(b"etag", etag.encode()), (b"location", quote(f"/{req.bucket}/{key}").encode()),
            *sse_headers(info, fake)]
    if redirect:
        sep = "&" if "?" in redirect else "?"
        target = redirect + sep + urlencode({"bucket": req.bucket, "key": key, "etag": etag})
        hdrs = [h for h in hdrs if h[0] != b"location"]
        return await respond(send, 303, [*hdrs, (b"location", target.encode("latin-1", "replace"))])
    status = f.get("success_action_status", "204")
    if status == "201":  # S3 writes this one without a namespace
        body = (f'{XML_DECL}<PostResponse><Location>/{e(req.bucket)}/{e(key)}</Location><Bucket>{e(req.bucket)}'
                f"</Bucket><Key>{e(key)}</Key><ETag>{e(etag)}</ETag></PostResponse>").encode()
        return await respond(send, 201, [*XML_CT, *hdrs], body)
    await respond(send, 200 if status == "200" else 204, hdrs)
