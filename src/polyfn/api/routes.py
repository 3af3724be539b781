"""Routes declared as data: one table per API, each row a method, a path and the handler that answers it.

A handler is a method of a small class whose constructor names the services it uses (the composition root hands
them in): the row `Route("GET", "/functions", Functions.list_functions)` says what answers and, through the class,
what it needs. `mount` binds each row to the instance of its class, in the table's order (first match wins), as
Starlette builds its routes once at construction; FastAPI reads the bound method's parameters as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from fastapi import APIRouter


class Route(NamedTuple):
    method: str  # one HTTP method, or several separated by commas
    path: str
    handler: Callable[..., Any]  # a method of a handler class (unbound: the table is data)
    options: dict[str, Any] = {}  # add_api_route's other arguments: status_code, summary, include_in_schema …


def bind(table: Iterable[Route], *handlers: object) -> Iterator[tuple[Route, Callable[..., Any]]]:
    """Each row of `table` with its handler bound to the one object of `handlers` of its class."""
    by_class = {type(h).__qualname__: h for h in handlers}
    for route in table:
        owner = route.handler.__qualname__.rpartition(".")[0]
        if owner not in by_class:
            raise LookupError(f"{route.method} {route.path}: no {owner} was handed to mount()")
        yield route, getattr(by_class[owner], route.handler.__name__)


def mount(router: APIRouter, table: Iterable[Route], *handlers: object) -> None:
    """Add each row of `table` to `router`, its handler bound to the one object of `handlers` of its class."""
    for route, handler in bind(table, *handlers):
        router.add_api_route(route.path, handler, methods=route.method.split(","), **route.options)
