"""The DynamoDB face: AWS's JSON 1.0 protocol (`X-Amz-Target: DynamoDB_20120810.<Operation>`,
`application/x-amz-json-1.0`) on the node's main port, as boto3, `boto3.resource("dynamodb")` and the
`aws dynamodb` CLI speak it.

Every request is SigV4-verified (`auth/sigv4.py`, service `dynamodb`) against the node's one key store, then
authorised per operation and table (`db/access.py`). The request body is the core's request model as is;
errors are serialised once here in the shape botocore parses: HTTP 400 (500 for our own faults) with
`{"__type": "com.amazonaws.dynamodb.v20120810#<Kind>", "message": …}` and, for a failed condition or a
cancelled transaction, the item / the cancellation reasons. Every response carries `x-amzn-RequestId` and
the `x-amz-crc32` of its body (botocore checks it).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from polyfn.auth import sigv4
from polyfn.db import access, multi, reads
from polyfn.db.core import Database
from polyfn.db.errors import ConditionFailed, DbError, TransactionCanceled
from polyfn.db.metering import dynamodb_items
from polyfn.tenancy import key_namespace

log = logging.getLogger("polyfn.db")

PREFIX = "DynamoDB_20120810."
ERROR_NS = "com.amazonaws.dynamodb.v20120810#"
CORAL = "com.amazon.coral.service#"
CONTENT_TYPE = b"application/x-amz-json-1.0"
MAX_BODY = 16 * 1024 * 1024
_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()

# request ids: this process's random half, then a counter (uuid4 read the kernel's random source per request:
# a tenth of a GetItem's CPU)
_RID_PREFIX = os.urandom(8).hex().encode()
_rid = itertools.count(1)
_HEAD = b"content-type: " + CONTENT_TYPE + b"\r\ncontent-length: %d\r\nx-amzn-requestid: %s%016x\r\nx-amz-crc32: %d\r\n"


def _reseed() -> None:
    """A forked child (the tests' node fork server: tests/e2e/nodefork.py) gets a random half of its own."""
    global _RID_PREFIX
    _RID_PREFIX = os.urandom(8).hex().encode()


os.register_at_fork(after_in_child=_reseed)

Op = Callable[[Database, str, dict[str, Any]], Awaitable[dict[str, Any]]]


#: the JSON type of each request field any operation reads (DynamoDB's own clients never send another): one of
#: the wrong type is a SerializationException before an operation reads it (before: a 500 from deep inside)
_TYPES: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(("TableName", "IndexName", "ConditionExpression", "KeyConditionExpression", "FilterExpression",
                     "ProjectionExpression", "UpdateExpression", "ReturnValues", "ReturnConsumedCapacity",
                     "ReturnItemCollectionMetrics", "Select", "ExclusiveStartTableName", "Statement", "NextToken",
                     "ClientRequestToken", "BillingMode", "ResourceArn", "StreamArn", "ShardIterator", "ShardId",
                     "ShardIteratorType", "ConditionalOperator", "ReturnValuesOnConditionCheckFailure", "TableClass",
                     "BackupName", "ExclusiveStartStreamArn", "SequenceNumber"), str),
    **dict.fromkeys(("Limit", "Segment", "TotalSegments"), int),
    **dict.fromkeys(("ConsistentRead", "ScanIndexForward", "DeletionProtectionEnabled"), bool),
    **dict.fromkeys(("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes",
                     "TransactItems", "Statements", "TransactStatements", "Parameters", "AttributesToGet", "Tags",
                     "TagKeys", "GlobalSecondaryIndexUpdates", "ReplicaUpdates"), list),
    **dict.fromkeys(("Item", "Key", "ExpressionAttributeNames", "ExpressionAttributeValues", "ExclusiveStartKey",
                     "RequestItems", "StreamSpecification", "TimeToLiveSpecification", "ProvisionedThroughput",
                     "SSESpecification", "Expected", "KeyConditions", "QueryFilter", "ScanFilter",
                     "AttributeUpdates"), dict),
}


def _request(body: bytes) -> dict[str, Any] | str:
    """The request's JSON object, or why it is none (a SerializationException's message)."""
    try:
        req = _dec.decode(body) if body else {}
    except (msgspec.DecodeError, RecursionError):  # (RecursionError: JSON nested deeper than the decoder goes)
        return "Start of structure or map found where not expected"
    if not isinstance(req, dict):
        return "the request body must be a JSON object"
    return _mistyped(req) or req


def _mistyped(req: dict[str, Any]) -> str | None:
    """The message for the first field of `req` of the wrong JSON type (null counts as absent), else None."""
    for name, value in req.items():
        want = _TYPES.get(name)
        if want is None or value is None:
            continue
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            return f"the value of {name} is a {type(value).__name__}, not a {getattr(want, '__name__', want)}"
    return None


def _m(name: str) -> Op:
    def call(db: Database, ns: str, req: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        return getattr(db, name)(ns, req)  # type: ignore[no-any-return]  # (the method's coroutine: no wrapper)

    return call


def _one(req: dict[str, Any]) -> list[str]:
    return [str(req.get("TableName"))]


def _batch(req: dict[str, Any]) -> list[str]:
    items = req.get("RequestItems")
    return [str(t) for t in items] if isinstance(items, dict) else []


def _transact(req: dict[str, Any]) -> list[str]:
    out = []
    items = req.get("TransactItems")
    for a in items if isinstance(items, list) else []:
        if isinstance(a, dict):
            for spec in a.values():
                if isinstance(spec, dict):
                    out.append(str(spec.get("TableName")))
    return out


def _statement(req: dict[str, Any]) -> list[str]:
    from polyfn.db import partiql

    return [partiql.table_of(req.get("Statement"))]


#: operation → (what it does, the access it needs, the tables it touches)
OPERATIONS: dict[str, tuple[Op, str, Callable[[dict[str, Any]], list[str]]]] = {
    "CreateTable": (_m("create_table"), access.MANAGE, _one),
    "DeleteTable": (_m("delete_table"), access.MANAGE, _one),
    "UpdateTable": (_m("update_table"), access.MANAGE, _one),
    "UpdateTimeToLive": (_m("update_ttl"), access.MANAGE, _one),
    "DescribeTable": (_m("describe_table"), access.READ, _one),
    "DescribeTimeToLive": (_m("describe_ttl"), access.READ, _one),
    "ListTables": (_m("list_tables"), access.READ, lambda req: []),
    "PutItem": (_m("put_item"), access.WRITE, _one),
    "UpdateItem": (_m("update_item"), access.WRITE, _one),
    "DeleteItem": (_m("delete_item"), access.WRITE, _one),
    "GetItem": (_m("get_item"), access.READ, _one),
    "Query": (reads.query, access.READ, _one),
    "Scan": (reads.scan, access.READ, _one),
    "BatchGetItem": (multi.batch_get, access.READ, _batch),
    "BatchWriteItem": (multi.batch_write, access.WRITE, _batch),
    "TransactGetItems": (multi.transact_get, access.READ, _transact),
    "TransactWriteItems": (multi.transact_write, access.WRITE, _transact),
}


def _partiql_ops() -> None:
    from polyfn.db import partiql

    OPERATIONS["ExecuteStatement"] = (partiql.execute, access.WRITE, _statement)


_partiql_ops()

_SIGV4 = {
    sigv4.MISSING: ("MissingAuthenticationTokenException", 400),
    sigv4.MALFORMED: ("IncompleteSignatureException", 400),
    sigv4.BAD_DATE: ("IncompleteSignatureException", 400),
    sigv4.QUERY_PARAMS: ("IncompleteSignatureException", 400),
    sigv4.UNKNOWN_KEY: ("UnrecognizedClientException", 400),
    sigv4.NO_SECRET: ("UnrecognizedClientException", 400),
    sigv4.SKEWED: ("InvalidSignatureException", 400),
    sigv4.WRONG_SERVICE: ("InvalidSignatureException", 400),
}


def error_body(kind: str, message: str, namespace: str = ERROR_NS, **extra: Any) -> bytes:
    return _enc.encode({"__type": namespace + kind, "message": message, **extra})


def db_error(e: DbError) -> tuple[int, bytes]:
    if isinstance(e, ConditionFailed):
        extra = {"Item": e.item} if e.item is not None else {}
        return e.status, error_body(e.kind, e.message, **extra)
    if isinstance(e, TransactionCanceled):
        return e.status, _enc.encode({"__type": ERROR_NS + e.kind, "Message": e.message,
                                      "CancellationReasons": [r.wire() for r in e.reasons]})
    return e.status, error_body(e.kind, e.message)


def _header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Latin-1 names → values (the last of a repeated name's): the names and the values each joined, decoded and
    split at once (a decode per header cost twice as much); a value with a line feed in it is decoded alone."""
    if raw:
        names, values = zip(*raw, strict=True)
        ks = b"\n".join(names).decode("latin-1").split("\n")
        vs = b"\n".join(values).decode("latin-1").split("\n")
        if len(ks) == len(vs) == len(raw):
            return dict(zip(ks, vs, strict=True))
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}


class DynamoDBApi:
    """Raw ASGI app for the requests `owns` picks out of the main port's traffic."""

    def __init__(self, db: Database, keys: Any, grants: access.Grants, ns: str = "default",
                 clock: Callable[[], float] = time.time):
        self.db = db
        self.keys = keys  # auth.keys.KeyRing (signing_credentials, ensure)
        self.grants = grants
        self.ns = ns
        self.clock = clock
        self.meter: Callable[[str, str | None, int, int], None] | None = None  # (ns, key owner, reads, writes)

    @staticmethod
    def owns(scope: dict[str, Any]) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/":
            return False
        for k, v in scope["headers"]:
            if k == b"x-amz-target":
                return v.startswith(PREFIX.encode())
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = bytearray()
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if len(body) > MAX_BODY:
                await self._send(send, 413, self.too_large())
                return
            if not msg.get("more_body"):
                break
        status, out = await self.handle(scope, bytes(body))
        await self._send(send, status, out)

    async def handle(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        return await self.answer(scope["method"], scope.get("raw_path") or scope["path"].encode(),
                                 scope.get("query_string", b""), scope["headers"], body)

    async def answer(self, method: str, raw_path: bytes, query: bytes, raw_headers: list[tuple[bytes, bytes]],
                     body: bytes) -> tuple[int, bytes]:
        """(status, body) of one request: its method, path and query as they came, its headers (lower-case
        names, as ASGI gives them), its whole body."""
        headers = _header_dict(raw_headers)
        if len(headers) != len(raw_headers):  # a header repeated: its values joined with ',' (SigV4's rule)
            headers = {}
            for k, v in raw_headers:
                name = k.decode("latin-1")
                headers[name] = headers[name] + "," + v.decode("latin-1") if name in headers else v.decode("latin-1")
        target = headers.get("x-amz-target", "")[len(PREFIX):]
        now = self.clock()
        try:
            akid = sigv4.claimed_key_id(headers.get("authorization", ""))
            if akid and not self.keys.known(akid, now):
                await self.keys.ensure(akid, now)
            key = sigv4.verify(method, "/" if raw_path == b"/" else raw_path.decode("latin-1"),
                               sigv4.parse_query(query.decode("latin-1")) if query else [], headers,
                               self.keys.signing_credentials, now, "dynamodb", hashlib.sha256(body).hexdigest()).key
        except sigv4.SigV4Error as e:
            kind, status = _SIGV4.get(e.reason, ("InvalidSignatureException", 400))
            return status, error_body(kind, e.message, CORAL)
        op = OPERATIONS.get(target)
        if op is None:
            return 400, error_body("UnknownOperationException", f"The operation {target!r} is not supported by "
                                   "polyfn's DynamoDB API", CORAL)
        fn, need, tables_of = op
        req = _request(body)
        if isinstance(req, str):
            return 400, error_body("SerializationException", req, CORAL)
        try:
            if target == "ExecuteStatement":
                from polyfn.db import partiql

                need = partiql.access_of(req.get("Statement"))
            ns = key_namespace(key) or self.ns  # a key's tables are its namespace's (tenancy.py)
            grants = await self.grants.of(ns, key.owner) if key.owner is not None else {}
            refusal = access.allowed(key, need, tables_of(req), grants)
            if refusal is not None:
                return 400, error_body("AccessDeniedException", refusal, CORAL)
            out = await fn(self.db, ns, req)
            if self.meter is not None:  # items read and written (usage metering: db/metering.py)
                self.meter(ns, key.owner, *dynamodb_items(target, req, out))
            if target == "ListTables" and key.owner is not None:
                out["TableNames"] = [t for t in out["TableNames"] if t in grants]
        except DbError as e:
            return db_error(e)
        except RecursionError:  # an expression (or a value) nested deeper than its parser or evaluator goes
            return 400, error_body("ValidationException", "Invalid expression: it is nested too deeply")
        except Exception:
            log.exception("DynamoDB %s failed", target)
            return 500, error_body("InternalServerError", "Internal server error")
        return 200, _enc.encode(out)

    # -- answered without ASGI (gateway/direct.py) --------------------------------------------------------------

    max_body = MAX_BODY

    @staticmethod
    def response_headers(status: int, body: bytes) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(body)),
                (b"x-amzn-requestid", _RID_PREFIX + b"%016x" % next(_rid)), (b"x-amz-crc32", b"%d" % zlib.crc32(body))]

    @staticmethod
    def head(status: int, body: bytes) -> bytes:
        """`response_headers` as the lines of an HTTP/1.1 response."""
        return _HEAD % (len(body), _RID_PREFIX, next(_rid), zlib.crc32(body))

    @staticmethod
    def too_large() -> bytes:
        return error_body("ValidationException", "Request body is too large")

    @classmethod
    async def _send(cls, send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": cls.response_headers(status, body)})
        await send({"type": "http.response.body", "body": body})
