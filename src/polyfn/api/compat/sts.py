"""AWS STS's wire API, the one action polyfn has: `AssumeRole` (query protocol, SigV4 service `sts`), on the
main port. A function's `boto3.client("sts")` reaches it unconfigured (`AWS_ENDPOINT_URL_STS`); what it hands
out is limited by the policy to one bucket and prefix of the node's object store (`auth/sts.py`).
`RoleArn` and `RoleSessionName` are required as on AWS and echoed back; the role itself means nothing here:
the caller's own key is what the credentials are cut from."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from polyfn.auth import sigv4
from polyfn.auth.sts import Issuer, StsError

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
BODY_MAX = 64 * 1024


class StsApi:
    def __init__(self, issuer: Issuer, lookup: Callable[[str], Any], clock: Callable[[], float] = time.time):
        self.issuer = issuer
        self.lookup = lookup  # KeyRing.signing_credentials
        self.clock = clock

    @staticmethod
    def owns(scope: dict[str, Any]) -> bool:
        """POST / signed for the `sts` service."""
        if scope.get("type") != "http" or scope.get("path") != "/" or scope.get("method") != "POST":
            return False
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return b"/sts/aws4_request" in auth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if len(body) > BODY_MAX:
                return await _send(send, _error(413, "ValidationError", "the request is too large"))
            if not msg.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            ok = sigv4.verify("POST", "/", [], headers, self.lookup, self.clock(), "sts",
                              hashlib.sha256(body).hexdigest())
        except sigv4.SigV4Error as e:
            return await _send(send, _error(403, "SignatureDoesNotMatch" if e.reason == sigv4.MISMATCH else
                                            "InvalidClientTokenId", e.message))
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if form.get("Action") != "AssumeRole":
            return await _send(send, _error(400, "InvalidAction", f"Action {form.get('Action')!r} is not supported "
                                                                   "(polyfn's STS has AssumeRole)"))
        for field in ("RoleArn", "RoleSessionName", "Policy"):
            if not form.get(field):
                return await _send(send, _error(400, "ValidationError", f"{field} is required (Policy limits the "
                                                                         "credentials to one bucket and prefix)"))
        try:
            ttl = int(form.get("DurationSeconds", "900"))
            creds = self.issuer.assume(ok.key, form["Policy"], ttl)
        except ValueError:
            return await _send(send, _error(400, "ValidationError", "DurationSeconds must be a number"))
        except StsError as e:
            return await _send(send, _error(e.status, e.code, e.message))
        expiration = datetime.datetime.fromtimestamp(creds["Expiration"], datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        session = escape(form["RoleSessionName"])
        xml = (f'<AssumeRoleResponse xmlns="{NS}"><AssumeRoleResult><Credentials>'
               f"<AccessKeyId>{creds['AccessKeyId']}</AccessKeyId><SecretAccessKey>{creds['SecretAccessKey']}"
               f"</SecretAccessKey><SessionToken>{creds['SessionToken']}</SessionToken><Expiration>{expiration}"
               f"</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>{ok.key.id}:{session}</AssumedRoleId>"
               f"<Arn>{escape(form['RoleArn'])}/{session}</Arn></AssumedRoleUser></AssumeRoleResult>"
               f"<ResponseMetadata><RequestId>{secrets.token_hex(16)}</RequestId></ResponseMetadata>"
               "</AssumeRoleResponse>")
        await _send(send, (200, xml.encode()))


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, (f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                    f"<Message>{escape(message)}</Message></Error><RequestId>{secrets.token_hex(16)}</RequestId>"
                    "</ErrorResponse>").encode()


async def _send(send: Any, answer: tuple[int, bytes]) -> None:
    status, body = answer
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/xml"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
