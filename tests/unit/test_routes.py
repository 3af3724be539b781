"""api/routes.py: a table row is bound to the one handler object of its class, in the table's order."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from polyfn.api.routes import Route, mount


class Greetings:
    def __init__(self, word: str):
        self.word = word

    async def hello(self, name: str) -> dict[str, Any]:
        return {"said": f"{self.word} {name}"}

    async def fixed(self) -> dict[str, Any]:
        return {"said": "fixed"}


class Other:
    async def ping(self) -> dict[str, Any]:
        return {"pong": True}


TABLE = (
    Route("GET", "/hello/fixed", Greetings.fixed),
    Route("GET", "/hello/{name}", Greetings.hello),
    Route("GET,POST", "/ping", Other.ping, {"status_code": 202}),
)


def test_rows_are_bound_to_their_class_instance_in_order() -> None:
    app = FastAPI()
    r = APIRouter()
    mount(r, TABLE, Other(), Greetings("hi"))
    app.include_router(r)
    client = TestClient(app)
    assert client.get("/hello/fixed").json() == {"said": "fixed"}  # first row first
    assert client.get("/hello/ann").json() == {"said": "hi ann"}
    for method in ("get", "post"):
        res = getattr(client, method)("/ping")
        assert (res.status_code, res.json()) == (202, {"pong": True})
    assert client.delete("/ping").status_code == 405


def test_a_row_whose_class_was_not_handed_in_is_refused() -> None:
    with pytest.raises(LookupError, match="/ping: no Other"):
        mount(APIRouter(), TABLE, Greetings("hi"))
