"""Bucket CORS configuration (Put/Get/DeleteBucketCors) and how a browser's request is matched against it.

Pure: rules in, decision out. A rule allows origins (one `*` wildcard each), methods, request headers (with
wildcards, case-insensitive); the first rule that matches origin, method and every requested header wins
(S3's order). No rule, no CORS headers; a preflight with no matching rule is refused (403).
"""

from __future__ import annotations

import fnmatch
import xml.etree.ElementTree as ET
from typing import Any

from polyfn.storage.errors import S3Error
from polyfn.storage.wire import e, malformed

METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
MAX_RULES = 100

#: What a bucket behind the `s3` backend answers (its rules live upstream): any origin, any method.
DEFAULT_RULES: list[dict[str, Any]] = [{"origins": ["*"], "methods": list(METHODS), "headers": ["*"],
                                        "expose": ["ETag", "x-amz-request-id", "x-amz-version-id"], "max_age": 3000}]


def parse_rules(root: ET.Element) -> list[dict[str, Any]]:
    rules = []
    for r in root.findall("CORSRule"):
        rule = {"id": r.findtext("ID") or "",
                "origins": [x.text or "" for x in r.findall("AllowedOrigin")],
                "methods": [x.text or "" for x in r.findall("AllowedMethod")],
                "headers": [(x.text or "").lower() for x in r.findall("AllowedHeader")],
                "expose": [x.text or "" for x in r.findall("ExposeHeader")],
                "max_age": None}
        if not rule["origins"] or not rule["methods"]:
            raise malformed("A CORSRule needs at least one AllowedOrigin and one AllowedMethod.")
        for m in rule["methods"]:
            if m not in METHODS:
                raise S3Error(400, "InvalidRequest", f"Found unsupported HTTP method in CORS config. Unsupported "
                              f"method is {m}")
        for o in rule["origins"]:
            if o.count("*") > 1:
                raise S3Error(400, "InvalidRequest", f"AllowedOrigin {o!r} can not have more than one wildcard.")
        age = r.findtext("MaxAgeSeconds")
        if age:
            try:
                rule["max_age"] = int(age)
            except ValueError:
                raise malformed("MaxAgeSeconds must be an integer") from None
        rules.append(rule)
    if not rules or len(rules) > MAX_RULES:
        raise malformed(f"A CORS configuration has 1 to {MAX_RULES} CORSRule elements.")
    return rules


def to_xml(rules: list[dict[str, Any]]) -> str:
    out = []
    for r in rules:
        parts = [f"<ID>{e(r['id'])}</ID>" if r.get("id") else ""]
        parts += [f"<AllowedHeader>{e(h)}</AllowedHeader>" for h in r["headers"]]
        parts += [f"<AllowedMethod>{e(m)}</AllowedMethod>" for m in r["methods"]]
        parts += [f"<AllowedOrigin>{e(o)}</AllowedOrigin>" for o in r["origins"]]
        parts += [f"<ExposeHeader>{e(h)}</ExposeHeader>" for h in r["expose"]]
        if r.get("max_age") is not None:
            parts.append(f"<MaxAgeSeconds>{r['max_age']}</MaxAgeSeconds>")
        out.append("<CORSRule>" + "".join(parts) + "</CORSRule>")
    return "".join(out)


def _like(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value or ("*" in pattern and fnmatch.fnmatchcase(value, pattern))


def match(rules: list[dict[str, Any]], origin: str, method: str, asked: tuple[str, ...]) -> dict[str, Any] | None:
    for r in rules:
        if method not in r["methods"] or not any(_like(o, origin) for o in r["origins"]):
            continue
        if all(any(_like(p, h) for p in r["headers"]) for h in asked):
            return r
    return None


def response_headers(rule: dict[str, Any], origin: str, preflight: bool = False,
                     asked: tuple[str, ...] = ()) -> list[tuple[bytes, bytes]]:
    wildcard = "*" in rule["origins"] and not any(o == origin for o in rule["origins"])
    out = [(b"access-control-allow-origin", (b"*" if wildcard else origin.encode("latin-1", "replace"))),
           (b"access-control-allow-methods", ", ".join(rule["methods"]).encode())]
    if not wildcard:
        out.append((b"vary", b"Origin, Access-Control-Request-Headers, Access-Control-Request-Method"))
        out.append((b"access-control-allow-credentials", b"true"))
    if preflight and asked:
        out.append((b"access-control-allow-headers", ", ".join(asked).encode("latin-1", "replace")))
    if rule["expose"]:
        out.append((b"access-control-expose-headers", ", ".join(rule["expose"]).encode("latin-1", "replace")))
    if rule.get("max_age") is not None:
        out.append((b"access-control-max-age", str(rule["max_age"]).encode()))
    return out
