"""CloudEvents HTTP parsing (binary, structured, batch) and trigger filters (pure)."""

from __future__ import annotations

import json

import pytest

from polyfn.triggers import events


def test_binary_mode() -> None:
    (e,) = events.from_http({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t",
                             "ce-subject": "x", "content-type": "application/json"}, b'{"a": 1}')
    assert e == {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "subject": "x",
                 "datacontenttype": "application/json", "data": {"a": 1}}
    (e,) = events.from_http({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t",
                             "content-type": "application/octet-stream"}, b"\x00\x01")
    assert e["data_base64"] == "AAE="


def test_structured_and_batch() -> None:
    ev = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": 5}
    assert events.from_http({"content-type": "application/cloudevents+json; charset=utf-8"},
                            json.dumps(ev).encode()) == [ev]
    got = events.from_http({"content-type": "application/cloudevents-batch+json"}, json.dumps([ev, ev]).encode())
    assert len(got) == 2


@pytest.mark.parametrize(("headers", "body", "needle"), [
    ({}, b"x", "no CloudEvent"),
    ({"content-type": "application/cloudevents+json"}, b"[1]", "JSON object"),
    ({"content-type": "application/cloudevents+json"}, b"{", "not valid JSON"),
    ({"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0", "id": "", "source": "s", "type": "t"}',
     "'id'"),
    ({"ce-specversion": "0.3", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b"", "specversion"),
])
def test_invalid(headers: dict, body: bytes, needle: str) -> None:
    with pytest.raises(events.InvalidEvent) as e:
        events.from_http(headers, body)
    assert needle in str(e.value)


@pytest.mark.parametrize(("filters", "event", "ok"), [
    ({}, {"type": "a"}, True),
    ({"type": "a"}, {"type": "a"}, True),
    ({"type": "a"}, {"type": "ab"}, False),
    ({"source": "/shop/*"}, {"source": "/shop/eu"}, True),
    ({"source": "/shop/*"}, {"source": "/shopping"}, False),
    ({"type": "a*"}, {"type": "ab"}, False),  # prefix match only for source
    ({"subject": "x"}, {"type": "a"}, False),
])
def test_matches(filters: dict, event: dict, ok: bool) -> None:
    assert events.matches(filters, event) is ok
