"""Definition-file triggers → polyfn trigger API requests."""

from __future__ import annotations

import pytest

from polyfn.cli.manifest import every_to_cron, to_polyfn_trigger, trigger_id
from polyfn.manifests import TriggerDecl


@pytest.mark.parametrize(("seconds", "cron"), [
    (60, "* * * * *"), (300, "*/5 * * * *"), (3600, "0 * * * *"), (7200, "0 */2 * * *"),
    (86400, "0 0 * * *"), (172800, "0 0 */2 * *"), (10, "* * * * * */10"),
])
def test_every_to_cron(seconds: int, cron: str) -> None:
    assert every_to_cron(seconds) == cron


@pytest.mark.parametrize("seconds", [0, 90, 61 * 60])
def test_every_without_exact_cron(seconds: int) -> None:
    with pytest.raises(ValueError):
        every_to_cron(seconds)


def test_mapping() -> None:
    assert to_polyfn_trigger(TriggerDecl("cron", {"every": 300, "payload": {"k": 1}}, "w")) == (
        "cron", {"schedule": "*/5 * * * *", "data": {"k": 1}})
    assert to_polyfn_trigger(TriggerDecl("cron", {"cron": "0 8 * * *", "timezone": "Asia/Shanghai"}, "w")) == (
        "cron", {"schedule": "0 8 * * *", "timezone": "Asia/Shanghai"})
    assert to_polyfn_trigger(TriggerDecl("queue", {"queue": "arn:aws:sqs:us-east-1:123456789012:jobs",
                                                   "batch_size": 10}, "w")) == ("topic", {"topic": "jobs", "batch_size": 10})
    assert to_polyfn_trigger(TriggerDecl("storage", {"bucket": "photos", "events": [None], "filter": None}, "w")) == (
        "storage", {"bucket": "photos"})
    with pytest.raises(ValueError):
        to_polyfn_trigger(TriggerDecl("queue", {"queue": None}, "w"))
    assert trigger_id("fn", TriggerDecl("cron", {}, "a")) != trigger_id("fn", TriggerDecl("cron", {}, "b"))
