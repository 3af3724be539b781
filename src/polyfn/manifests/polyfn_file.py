"""polyfn's own definition file (`polyfn: 1`), as the shipped scenarios use it (`polyfn deploy -f scenario.yml`).

One file declares what a small application needs on one node: buckets to make, DynamoDB-API tables to create
(hash key, optional range key, all strings unless typed `name:N`), and functions with polyfn's own spec
fields (the same names as `POST /v1/functions`: `handler`, `flavor`, `memory`, `timeout`, `env`,
`retry_attempts` …), the tables each may reach (`tables: [orders, stock:read]` → `polyfn db grant`) and
their triggers in polyfn's own trigger config (`{kind: mqtt, topic: …, qos: 1}` = `POST
/v1/functions/NAME/triggers` with the other keys as `config`). Nothing is translated, so nothing is lost:
an unknown key is an error naming its place.

    polyfn: 1
    buckets: [images]
    tables: {orders: {key: id}}
    functions:
      resize:
        code: .                  # folder, relative to the file (default: the file's folder)
        handler: main.handle
        flavor: aliyun
        tables: [orders]
        triggers:
          - {kind: storage, bucket: images, prefix: uploads/, events: [created]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyfn import model
from polyfn.manifests.model import ManifestError, Plan, PlannedFunction, TriggerDecl, check_keys, env_map

TOP_KEYS = {"polyfn", "description", "buckets", "tables", "functions"}
FN_EXTRA = {"code", "triggers", "tables"}
SPEC_KEYS = set(model.FunctionSpec.__struct_fields__) - {"name"}
TABLE_KEYS = {"key", "range"}
KEY_TYPES = {"S", "N", "B"}


def _key(value: Any, where: str) -> dict[str, str]:
    """`id` or `id:N` → {"name", "type"}."""
    name, _, typ = str(value).partition(":")
    typ = typ or "S"
    if not name or typ not in KEY_TYPES:
        raise ManifestError(f"{where}: {value!r} is not a key like `id` or `id:N` (types S, N, B)")
    return {"name": name, "type": typ}


def _tables(doc: Any, plan: Plan) -> None:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ManifestError("tables: expected a mapping of table name → {key, range}")
    for name, t in doc.items():
        where = f"tables.{name}"
        check_keys(t, where, TABLE_KEYS)
        if not isinstance(t, dict) or "key" not in t:
            raise ManifestError(f"{where}: needs `key` (the hash key's name, e.g. `key: id`)")
        table = {"name": str(name), "key": _key(t["key"], f"{where}.key")}
        if t.get("range") is not None:
            table["range"] = _key(t["range"], f"{where}.range")
        plan.tables.append(table)


def _grants(value: Any, where: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{where}: expected a list of table names (`orders`, or `orders:read`)")
    out = []
    for i, item in enumerate(value):
        table, _, access = str(item).partition(":")
        access = access or "write"
        if not table or access not in ("read", "write"):
            raise ManifestError(f"{where}[{i}]: {item!r} is not `TABLE` or `TABLE:read`")
        out.append((table, access))
    return out


def _triggers(value: Any, where: str) -> list[TriggerDecl]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{where}: expected a list of triggers ({{kind: cron, schedule: '0 3 * * *'}})")
    out = []
    for i, t in enumerate(value):
        w = f"{where}[{i}]"
        if not isinstance(t, dict) or not t.get("kind"):
            raise ManifestError(f"{w}: a trigger is a mapping with `kind` (cron, storage, mqtt, amqp, log …)")
        config = {str(k): v for k, v in t.items() if k not in ("kind", "id")}
        decl = TriggerDecl(str(t["kind"]), config, w, native=True)
        if t.get("id"):
            decl.id = str(t["id"])
        out.append(decl)
    return out


def parse(doc: dict[str, Any], path: Path, params: dict[str, str]) -> Plan:
    plan = Plan("polyfn", path)
    check_keys(doc, path.name, TOP_KEYS)
    if doc.get("polyfn") not in (1, "1"):
        raise ManifestError(f"{path.name}: polyfn: {doc.get('polyfn')!r} is not a version this polyfn reads (1)")
    buckets = doc.get("buckets") or []
    if not isinstance(buckets, list):
        raise ManifestError("buckets: expected a list of bucket names")
    plan.buckets = [str(b) for b in buckets]
    _tables(doc.get("tables"), plan)
    functions = doc.get("functions")
    if not isinstance(functions, dict) or not functions:
        raise ManifestError("functions: expected a mapping of function name → spec")
    for name, f in functions.items():
        where = f"functions.{name}"
        check_keys(f, where, SPEC_KEYS | FN_EXTRA)
        f = f or {}
        try:
            fname = model.validate_name(str(name))
        except model.SpecError as e:
            raise ManifestError(f"{where}: {e}") from None
        code = (path.parent / str(f.get("code", "."))).resolve()
        if not code.is_dir():
            raise ManifestError(f"{where}.code: {code} is not a folder")
        spec = {"name": fname, **{k: v for k, v in f.items() if k in SPEC_KEYS}}
        if "env" in spec:
            spec["env"] = env_map(spec["env"], f"{where}.env")
        pf = PlannedFunction(fname, code, spec, where, triggers=_triggers(f.get("triggers"), f"{where}.triggers"))
        pf.grants = _grants(f.get("tables"), f"{where}.tables")
        plan.functions.append(pf)
    return plan
