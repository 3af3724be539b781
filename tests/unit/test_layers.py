"""The import graph of src/polyfn holds the layers of docs/architecture.md ("Wiring: the composition root").

Every import counts (top level, inside functions, under TYPE_CHECKING). The faces take services, never the
node; nothing below the faces imports a face or the root; and no new import circle appears (the ones that
remain are listed, to be opened, never added to).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: modules that may import the composition root
ROOT_USERS = {"polyfn.server", "polyfn.localrun", "polyfn.node", "polyfn.cli.serve"}
#: the faces: the HTTP APIs and the console
FACES = ("polyfn.api", "polyfn.console")
#: below the faces (they may not import a face, nor the root)
LOWER = ("polyfn.invoker", "polyfn.call", "polyfn.queue", "polyfn.triggers", "polyfn.scheduler", "polyfn.sandbox",
         "polyfn.auth", "polyfn.store", "polyfn.observe", "polyfn.gateway", "polyfn.deploy", "polyfn.workflows",
         "polyfn.model", "polyfn.config", "polyfn.errors", "polyfn.protocol", "polyfn.lifecycle", "polyfn.services",
         "polyfn.events", "polyfn.headers", "polyfn.jsontext", "polyfn.loops")
#: circles that remain (each a set of modules); a new one fails the test
KNOWN_CIRCLES = [
    {"polyfn.runtimes.python.fnzygote", "polyfn.runtimes.python.zygote"},
    # the pre-forked blanks' shared root (sandbox/rootfs.py) and the instance loop reach each other
    {"polyfn.runtimes.python.instance", "polyfn.sandbox", "polyfn.sandbox.mounts", "polyfn.sandbox.rootfs"},
    {"polyfn.storage.local", "polyfn.storage.uploads"},
    {"polyfn.storage.api", "polyfn.storage.bucket_config", "polyfn.storage.bucket_ops", "polyfn.storage.list_ops",
     "polyfn.storage.multipart_ops", "polyfn.storage.object_meta", "polyfn.storage.object_ops",
     "polyfn.storage.post_upload", "polyfn.storage.routes", "polyfn.storage.write_request"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "polyfn").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


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


def test_no_new_import_circle() -> None:
    g = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    new = [sorted(c) for c in circles if not any(c <= known for known in KNOWN_CIRCLES)]
    assert new == []
