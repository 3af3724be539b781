"""The import graph of src/polyfn holds the layers of docs/architecture.md ("Wiring: the composition root").

Every import counts (top level, inside functions, under TYPE_CHECKING). The faces take services, never the
node; nothing below the faces imports a face or the root; no two modules import each other, even through
others (no import circle); and the packages stand in layers: no package imports one that imports it back
(an import up from a lower layer to a higher one would close such a circle).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: modules that may import the composition root
ROOT_USERS = {"polyfn.server", "polyfn.localrun", "polyfn.node", "polyfn.cli.serve"}
#: the faces: the HTTP APIs and the console
FACES = ("polyfn.api", "polyfn.console")
#: below the faces (they may not import a face, nor the root)
LOWER = ("polyfn.invoker", "polyfn.call", "polyfn.queue", "polyfn.triggers", "polyfn.scheduler", "polyfn.instances",
         "polyfn.sandbox", "polyfn.auth", "polyfn.store", "polyfn.observe", "polyfn.gateway", "polyfn.deploy",
         "polyfn.workflows", "polyfn.model", "polyfn.config", "polyfn.errors", "polyfn.protocol", "polyfn.lifecycle",
         "polyfn.services", "polyfn.events", "polyfn.headers", "polyfn.jsontext", "polyfn.loops", "polyfn.outcome",
         "polyfn.streamed_calls")
def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "polyfn").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


@functools.cache  # read once per run (the tests only read it)
def _graph() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                # a package's __init__ that only re-exports is its face, not an edge back into it
                if n and n != m and not m.startswith(n + "."):
                    edges[m].add(n)
    return edges


def _under(m: str, roots: tuple[str, ...]) -> bool:
    return any(m == r or m.startswith(r + ".") for r in roots)


def test_only_the_runner_imports_the_composition_root() -> None:
    g = _graph()
    users = {m for m, out in g.items() if out & {"polyfn.node", "polyfn.server"}}
    assert users <= ROOT_USERS, users - ROOT_USERS


def test_nothing_below_the_faces_imports_a_face() -> None:
    g = _graph()
    wrong = sorted((m, n) for m, out in g.items() if _under(m, LOWER) for n in out if _under(n, FACES))
    assert wrong == []


def _circles(g: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return circles


def _package(m: str) -> str:
    """The top-level package (or module) of polyfn that `m` belongs to: polyfn.storage.api → polyfn.storage."""
    return ".".join(m.split(".")[:2])


def test_no_import_circle() -> None:
    assert _circles(_graph()) == []


def test_no_package_imports_one_that_imports_it_back() -> None:
    g = _graph()
    packages: dict[str, set[str]] = {_package(m): set() for m in g}
    for m, out in g.items():
        packages[_package(m)].update(_package(n) for n in out if _package(n) != _package(m))
    circles = _circles(packages)
    arrows = sorted(f"{m} -> {n}" for c in circles for m, out in g.items() if _package(m) in c
                    for n in out if _package(n) in c and _package(n) != _package(m))
    assert circles == [], arrows


def test_a_circle_is_seen() -> None:
    """The check can fail: a made-up circle of three modules, and one of two packages, are found."""
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _package("polyfn.storage.api") == "polyfn.storage" and _package("polyfn.call") == "polyfn.call"
