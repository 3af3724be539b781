"""Storage triggers declared in vendors' definition files map to polyfn bucket notifications."""

from __future__ import annotations

import pytest

from polyfn.storage.notifications import from_vendor_config


@pytest.mark.parametrize("config,expected", [
    ({"bucket": "b", "events": ["s3:ObjectCreated:*"], "rules": [{"prefix": "up/"}, {"suffix": ".jpg"}]},
     ("b", ("created",), "up/", ".jpg")),
    ({"bucket": "b", "events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
      "filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "in/"}, {"Name": "suffix", "Value": ".png"}]}}},
     ("b", ("created", "deleted"), "in/", ".png")),
    ({"bucket": "b", "events": ["oss:ObjectCreated:PutObject"], "filter": {"key": {"prefix": "p/", "suffix": ""}}},
     ("b", ("created",), "p/", "")),
    ({"bucket": "photos", "events": ["created"], "filter": "uploads/{name}.jpg"}, ("photos", ("created",), "uploads/", ".jpg")),
    ({"bucket": "b", "events": "cos:ObjectRemove:*"}, ("b", ("deleted",), "", "")),
    ({"bucket": "b"}, ("b", ("created",), "", "")),
])
def test_vendor_configs(config: dict, expected: tuple) -> None:
    assert from_vendor_config(config) == expected
