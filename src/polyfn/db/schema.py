"""Table definitions: key schema, attribute types, secondary indexes, streams and TTL settings.

`TableDef.create(request)` validates a CreateTable request with DynamoDB's rules and messages;
`describe()` renders the TableDescription every face shows. Pure: no storage here.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from polyfn.db import values
from polyfn.db.errors import Invalid, LimitExceeded

NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")
ACCOUNT = "000000000000"
STREAM_VIEWS = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")
MAX_GSI = 20
MAX_LSI = 5


class Key(msgspec.Struct, frozen=True):
    hash: str
    hash_type: str
    range: str | None = None
    range_type: str | None = None

    def names(self) -> tuple[str, ...]:
        return (self.hash,) if self.range is None else (self.hash, self.range)

    def schema(self) -> list[dict[str, str]]:
        out = [{"AttributeName": self.hash, "KeyType": "HASH"}]
        if self.range is not None:
            out.append({"AttributeName": self.range, "KeyType": "RANGE"})
        return out


class Index(msgspec.Struct, frozen=True):
    name: str
    key: Key
    local: bool
    projection: str = "ALL"  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()

    def projects(self, table_key: Key) -> frozenset[str] | None:
        """The attributes an index row keeps (None: all)."""
        if self.projection == "ALL":
            return None
        return frozenset((*self.key.names(), *table_key.names(), *self.include))


class TableDef(msgspec.Struct):
    name: str
    id: str
    key: Key
    attributes: dict[str, str]  # name → S | N | B (every key attribute of the table and its indexes)
    indexes: list[Index] = []
    billing: str = "PAY_PER_REQUEST"
    throughput: dict[str, int] = {}
    stream_view: str | None = None  # None: no stream
    stream_label: str = ""
    ttl_attribute: str | None = None
    created_at: float = 0.0
    tags: dict[str, str] = {}
    deletion_protection: bool = False
    changes: bool = False  # change triggers follow the table (its changes are recorded even without a stream)

    def index(self, name: str) -> Index:
        for ix in self.indexes:
            if ix.name == name:
                return ix
        raise Invalid(f"The table does not have the specified index: {name}")

    def arn(self, region: str) -> str:
        return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{self.name}"

    def stream_arn(self, region: str) -> str:
        return f"{self.arn(region)}/stream/{self.stream_label}"

    def describe(self, region: str, item_count: int = 0, size: int = 0, status: str = "ACTIVE") -> dict[str, Any]:
        throughput = {"NumberOfDecreasesToday": 0, "ReadCapacityUnits": self.throughput.get("ReadCapacityUnits", 0),
                      "WriteCapacityUnits": self.throughput.get("WriteCapacityUnits", 0)}
        out: dict[str, Any] = {
            "TableName": self.name, "TableId": self.id, "TableArn": self.arn(region), "TableStatus": status,
            "CreationDateTime": self.created_at,
            "AttributeDefinitions": [{"AttributeName": k, "AttributeType": t} for k, t in self.attributes.items()],
            "KeySchema": self.key.schema(), "ProvisionedThroughput": throughput,
            "TableSizeBytes": size, "ItemCount": item_count,
            "DeletionProtectionEnabled": self.deletion_protection,
        }
        if self.billing == "PAY_PER_REQUEST":
            out["BillingModeSummary"] = {"BillingMode": "PAY_PER_REQUEST",
                                         "LastUpdateToPayPerRequestDateTime": self.created_at}
        for local, field_name in ((False, "GlobalSecondaryIndexes"), (True, "LocalSecondaryIndexes")):
            ixs = [ix for ix in self.indexes if ix.local == local]
            if ixs:
                out[field_name] = [self._describe_index(ix, region, throughput) for ix in ixs]
        if self.stream_view:
            out["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": self.stream_view}
            out["LatestStreamLabel"] = self.stream_label
            out["LatestStreamArn"] = self.stream_arn(region)
        return out

    def _describe_index(self, ix: Index, region: str, throughput: dict[str, int]) -> dict[str, Any]:
        proj: dict[str, Any] = {"ProjectionType": ix.projection}
        if ix.include:
            proj["NonKeyAttributes"] = list(ix.include)
        out: dict[str, Any] = {"IndexName": ix.name, "KeySchema": ix.key.schema(), "Projection": proj,
                               "IndexSizeBytes": 0, "ItemCount": 0,
                               "IndexArn": f"{self.arn(region)}/index/{ix.name}"}
        if not ix.local:
            out["IndexStatus"] = "ACTIVE"
            out["ProvisionedThroughput"] = throughput
        return out


def check_table_name(name: Any, field_name: str = "tableName") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise Invalid(f"1 validation error detected: Value '{name}' at '{field_name}' failed to satisfy constraint: "
                      "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between "
                      "3 and 255")
    return name


def _key(schema: Any, attrs: dict[str, str], what: str) -> Key:
    if not isinstance(schema, list) or not 1 <= len(schema) <= 2:
        raise Invalid(f"1 validation error detected: Value '{schema}' at '{what}' failed to satisfy constraint: "
                      "Member must have length less than or equal to 2 and greater than or equal to 1")
    kinds = [e.get("KeyType") if isinstance(e, dict) else None for e in schema]
    names = [e.get("AttributeName") if isinstance(e, dict) else None for e in schema]
    if kinds[0] != "HASH":
        raise Invalid("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    if len(schema) == 2 and kinds[1] != "RANGE":
        raise Invalid("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
    if len(names) == 2 and names[0] == names[1]:
        raise Invalid("Both the Hash Key and the Range Key element in the KeySchema have the same name")
    missing = [n for n in names if n not in attrs]
    if missing:
        raise Invalid("One or more parameter values were invalid: Some index key attributes are not defined in "
                      f"AttributeDefinitions. Keys: [{', '.join(map(str, missing))}], AttributeDefinitions: "
                      f"[{', '.join(attrs)}]")
    h = names[0]
    r = names[1] if len(names) == 2 else None
    return Key(h, attrs[h], r, attrs[r] if r else None)


def _projection(p: Any, name: str) -> tuple[str, tuple[str, ...]]:
    if not isinstance(p, dict):
        raise Invalid(f"One or more parameter values were invalid: Projection is missing for index {name}")
    kind = p.get("ProjectionType", "ALL")
    include = p.get("NonKeyAttributes") or []
    if kind not in ("ALL", "KEYS_ONLY", "INCLUDE"):
        raise Invalid(f"1 validation error detected: Value '{kind}' at 'projection.projectionType' failed to "
                      "satisfy constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]")
    if kind != "INCLUDE" and include:
        raise Invalid("One or more parameter values were invalid: ProjectionType is "
                      f"{kind}, but NonKeyAttributes is specified")
    if kind == "INCLUDE" and not include:
        raise Invalid("One or more parameter values were invalid: NonKeyAttributes must not be empty")
    return kind, tuple(include)


def _stream(spec: Any) -> str | None:
    if not spec:
        return None
    if not isinstance(spec, dict):
        raise Invalid("StreamSpecification must be a map")
    if not spec.get("StreamEnabled"):
        if spec.get("StreamViewType"):
            raise Invalid("One or more parameter values were invalid: StreamViewType cannot be specified when "
                          "StreamEnabled is false")
        return None
    view = spec.get("StreamViewType")
    if view not in STREAM_VIEWS:
        raise Invalid("One or more parameter values were invalid: You must specify a StreamViewType when "
                      "StreamEnabled is true" if view is None else
                      f"1 validation error detected: Value '{view}' at 'streamSpecification.streamViewType' failed "
                      "to satisfy constraint: Member must satisfy enum value set: "
                      "[NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY]")
    return str(view)


def billing(req: dict[str, Any]) -> tuple[str, dict[str, int]]:
    mode = req.get("BillingMode") or "PROVISIONED"
    pt = req.get("ProvisionedThroughput")
    if mode not in ("PROVISIONED", "PAY_PER_REQUEST"):
        raise Invalid(f"1 validation error detected: Value '{mode}' at 'billingMode' failed to satisfy constraint: "
                      "Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]")
    if mode == "PAY_PER_REQUEST":
        if pt:
            raise Invalid("One or more parameter values were invalid: Neither ReadCapacityUnits nor "
                          "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
        return mode, {}
    if not isinstance(pt, dict):
        raise Invalid("One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must "
                      "both be specified when BillingMode is PROVISIONED")
    return mode, {"ReadCapacityUnits": int(pt.get("ReadCapacityUnits", 0)),
                  "WriteCapacityUnits": int(pt.get("WriteCapacityUnits", 0))}


def create(req: dict[str, Any], table_id: str, now: float) -> TableDef:
    """A new table's definition from a CreateTable request (DynamoDB's validation order and messages)."""
    name = check_table_name(req.get("TableName"))
    defs = req.get("AttributeDefinitions")
    if not isinstance(defs, list) or not defs:
        raise Invalid("1 validation error detected: Value null at 'attributeDefinitions' failed to satisfy "
                      "constraint: Member must not be null")
    attrs: dict[str, str] = {}
    for d in defs:
        n, t = (d.get("AttributeName"), d.get("AttributeType")) if isinstance(d, dict) else (None, None)
        if t not in values.SCALARS:
            raise Invalid(f"1 validation error detected: Value '{t}' at 'attributeDefinitions.member.attributeType' "
                          "failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]")
        if not isinstance(n, str) or not n:
            raise Invalid("One or more parameter values were invalid: An AttributeName cannot be empty")
        if n in attrs:
            raise Invalid(f"Cannot have two attributes with the same name: {n}")
        attrs[n] = t
    key = _key(req.get("KeySchema"), attrs, "keySchema")
    indexes: list[Index] = []
    used = set(key.names())
    gsis, lsis = req.get("GlobalSecondaryIndexes") or [], req.get("LocalSecondaryIndexes") or []
    if len(gsis) > MAX_GSI:
        raise LimitExceeded(f"Subscriber limit exceeded: The number of global secondary indexes exceeds the limit "
                            f"of {MAX_GSI}")
    if len(lsis) > MAX_LSI:
        raise Invalid(f"One or more parameter values were invalid: Number of LocalSecondaryIndexes exceeds per-table "
                      f"limit of {MAX_LSI}")
    for local, group in ((True, lsis), (False, gsis)):
        for g in group:
            ix_name = g.get("IndexName") if isinstance(g, dict) else None
            check_table_name(ix_name, "indexName")
            ix_key = _key(g.get("KeySchema"), attrs, "keySchema")
            if local:
                if key.range is None:
                    raise Invalid("One or more parameter values were invalid: Table KeySchema does not have a range "
                                  "key, which is required when specifying a LocalSecondaryIndex")
                if ix_key.hash != key.hash:
                    raise Invalid("One or more parameter values were invalid: Index KeySchema does not have the same "
                                  f"leading hash key as table KeySchema for index: {ix_name}. index hash key: "
                                  f"{ix_key.hash}, table hash key: {key.hash}")
                if ix_key.range is None:
                    raise Invalid("One or more parameter values were invalid: Index KeySchema must have a range key "
                                  f"for index: {ix_name}")
            if any(ix.name == ix_name for ix in indexes):
                raise Invalid(f"One or more parameter values were invalid: Duplicate index name: {ix_name}")
            kind, include = _projection(g.get("Projection"), str(ix_name))
            indexes.append(Index(str(ix_name), ix_key, local, kind, include))
            used.update(ix_key.names())
    if set(attrs) != used:
        raise Invalid("One or more parameter values were invalid: Number of attributes in KeySchema does not exactly "
                      "match number of attributes defined in AttributeDefinitions")
    mode, throughput = billing(req)
    view = _stream(req.get("StreamSpecification"))
    tags = {t["Key"]: t["Value"] for t in req.get("Tags") or [] if isinstance(t, dict) and "Key" in t}
    return TableDef(name=name, id=table_id, key=key, attributes=attrs, indexes=indexes, billing=mode,
                    throughput=throughput, stream_view=view, stream_label=_label(now) if view else "",
                    created_at=now, tags=tags, deletion_protection=bool(req.get("DeletionProtectionEnabled")))


def _label(now: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def update(t: TableDef, req: dict[str, Any], now: float) -> TableDef:
    """UpdateTable: billing mode, throughput, stream specification, new or deleted GSIs, deletion protection."""
    t = msgspec.structs.replace(t)
    if "BillingMode" in req or "ProvisionedThroughput" in req:
        mode, throughput = billing({"BillingMode": req.get("BillingMode", t.billing),
                                    "ProvisionedThroughput": req.get("ProvisionedThroughput")})
        t.billing, t.throughput = mode, throughput
    if "StreamSpecification" in req:
        view = _stream(req["StreamSpecification"])
        if view and t.stream_view:
            raise Invalid(f"Table already has an enabled stream: {t.stream_arn('us-east-1')}")
        if not view and not t.stream_view:
            raise Invalid("Table already has no stream enabled")
        t.stream_view = view
        t.stream_label = _label(now) if view else ""
    if "DeletionProtectionEnabled" in req:
        t.deletion_protection = bool(req["DeletionProtectionEnabled"])
    for d in req.get("AttributeDefinitions") or []:
        if isinstance(d, dict) and d.get("AttributeName") and d.get("AttributeType") in values.SCALARS:
            t.attributes = {**t.attributes, d["AttributeName"]: d["AttributeType"]}
    for u in req.get("GlobalSecondaryIndexUpdates") or []:
        if "Create" in u:
            c = u["Create"]
            name = check_table_name(c.get("IndexName"), "indexName")
            if any(ix.name == name for ix in t.indexes):
                raise Invalid(f"One or more parameter values were invalid: Index with name: {name} already exists")
            ix_key = _key(c.get("KeySchema"), t.attributes, "keySchema")
            kind, include = _projection(c.get("Projection"), name)
            t.indexes = [*t.indexes, Index(name, ix_key, False, kind, include)]
        elif "Delete" in u:
            name = u["Delete"].get("IndexName")
            t.index(name)
            t.indexes = [ix for ix in t.indexes if ix.name != name]
    return t
