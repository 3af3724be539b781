"""Trigger configs as shown: passwords masked, in options and inside URLs (table-driven, pure)."""

from __future__ import annotations

import pytest

from polyfn.triggers.base import TriggerConfigError, opt_url
from polyfn.triggers.redact import redact, redact_url


@pytest.mark.parametrize("url,shown", [
    ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("nats://u:p@a:4222,nats://u:q@b:4222", "nats://u:***@a:4222,nats://u:***@b:4222"),
    ("nats://token@a:4222", "nats://token@a:4222"),  # no password part
    ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ("not a url", "not a url"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_config() -> None:
    cfg = {"url": "amqp://a:b@h/", "password": "pw", "username": "u", "qos": 1, "client_secret": "s", "empty": ""}
    assert redact(cfg) == {"url": "amqp://a:***@h/", "password": "***", "username": "u", "qos": 1,
                           "client_secret": "***", "empty": ""}
    assert cfg["password"] == "pw"  # the stored config is untouched


@pytest.mark.parametrize("url,words", [
    ("amqp//guest@host", ["scheme must be amqp:// or amqps://"]),
    ("http://host:5672/", ["scheme"]),
    ("amqp://:5672/", ["has no host"]),
    ("amqp://u:secret@host:99999/", ["Port out of range", "***"]),
])
def test_broker_urls_that_never_could_work(url: str, words: list[str]) -> None:
    with pytest.raises(TriggerConfigError) as e:
        opt_url({"url": url}, "url", "amqp://127.0.0.1/", ("amqp", "amqps"), "amqp://guest:guest@127.0.0.1:5672/")
    for w in words:
        assert w in str(e.value)
    assert "secret" not in str(e.value)
