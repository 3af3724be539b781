"""Scope rules and token buckets: pure functions, table-driven."""

from __future__ import annotations

import pytest

from polyfn.auth.keys import allows, required_scope
from polyfn.auth.ratelimit import Limiter, TokenBucket
from polyfn.store.security import KeyRecord


@pytest.mark.parametrize(("method", "path", "query", "expect"), [
    ("GET", "/v1/functions", {}, ("read", None)),
    ("GET", "/v1/functions/hello", {}, ("read", "hello")),
    ("GET", "/v1/functions/hello/logs", {}, ("read", "hello")),
    ("GET", "/v1/activations", {"function": "hello"}, ("read", "hello")),
    ("POST", "/v1/functions/hello/invoke", {}, ("invoke", "hello")),
    ("POST", "/v1/functions", {}, ("deploy", None)),
    ("PUT", "/v1/functions/hello", {}, ("deploy", "hello")),
    ("DELETE", "/v1/functions/hello", {}, ("deploy", "hello")),
    ("POST", "/v1/keys", {}, ("admin", None)),
    ("GET", "/v1/keys", {}, ("admin", None)),
    ("PUT", "/v1/secrets/x", {}, ("admin", None)),
])
def test_required_scope(method: str, path: str, query: dict[str, str], expect: tuple[str, str | None]) -> None:
    assert required_scope(method, path, query) == expect


def key(scope: str, function: str | None = None) -> KeyRecord:
    return KeyRecord(id="PFAKX", secret_sha256="0", scope=scope, function=function)


@pytest.mark.parametrize(("k", "scope", "function", "ok"), [
    (key("read"), "read", None, True),
    (key("read"), "invoke", "f", False),
    (key("invoke"), "read", "f", True),
    (key("invoke"), "deploy", "f", False),
    (key("deploy"), "deploy", "f", True),
    (key("deploy"), "admin", None, False),
    (key("admin"), "admin", None, True),
    (key("invoke", "f"), "invoke", "f", True),
    (key("invoke", "f"), "invoke", "g", False),
    (key("admin", "f"), "read", None, False),  # a function-bound key cannot list everything
])
def test_allows(k: KeyRecord, scope: str, function: str | None, ok: bool) -> None:
    assert allows(k, scope, function) is ok


def test_token_bucket_refills_at_rate() -> None:
    b = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    assert b.take(0.0) == 0 and b.take(0.0) == 0
    assert b.take(0.0) == pytest.approx(0.5)  # empty: one token takes 1/rate seconds
    assert b.take(0.5) == 0
    assert b.take(10.0) == 0 and b.take(10.0) == 0 and b.take(10.0) > 0  # never more than burst


def test_limiter_retry_after_is_whole_seconds_and_zero_rate_is_off() -> None:
    lim = Limiter()
    assert lim.check("k", 0, 1, 0.0) == 0
    assert lim.check("k", 0.1, 1, 0.0) == 0
    assert lim.check("k", 0.1, 1, 0.0) == 10
    assert lim.check("other", 0.1, 1, 0.0) == 0  # buckets are per name


def test_a_flood_of_new_names_does_not_reset_a_drained_bucket() -> None:
    """Sign-in limits are keyed by caller-chosen names: filling the table must not give the victim's back."""
    lim = Limiter(max_buckets=100)
    assert lim.check("victim", 0.01, 1, 0.0) == 0
    assert lim.check("victim", 0.01, 1, 0.0) > 0  # drained: the next try is 100 s away
    for i in range(1_000):
        lim.check(f"junk{i}", 1.0, 1, 1.0 + i / 1_000)
        assert len(lim.buckets) <= 100
    assert lim.check("victim", 0.01, 1, 2.0) > 0  # still drained
    assert lim.check("junk999", 1.0, 1, 2.0) > 0 or "junk999" in lim.buckets  # recent names are kept


def test_a_changed_rate_keeps_what_the_bucket_had_saved() -> None:
    """A namespace's share of its rate changes as nodes of a cluster start or stop serving it (quota_share.py):
    that must not hand out a full bucket each time."""
    lim = Limiter()
    assert lim.check("ns:team", 0.02, 1, 0.0) == 0
    assert lim.check("ns:team", 0.02, 1, 0.0) == 50  # drained at 0.02/s
    assert lim.check("ns:team", 0.01, 1, 0.0) == 100  # half the rate: still drained, twice the wait
    assert lim.check("ns:team", 0.02, 1, 10.0) == 45  # back: the 0.1 token saved meanwhile is kept
    assert lim.check("ns:team", 1.0, 5, 100.0) == 0  # a larger burst is not filled: 0.1 + 90 s × 0.02 = 1.9
    assert lim.check("ns:team", 1.0, 5, 100.0) > 0
