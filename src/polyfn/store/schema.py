"""Whether this node may migrate, or run against, the database's schema: the rolling-upgrade rule.

Each migration file says whether the nodes of the schema before it keep working once it has run:
`compatible = False` at the top of the file when they do not (0009 drops the table older nodes write their
log lines to); absent means they do. Nodes announce their code's schema in the name of their PostgreSQL
connections (`application_name = "polyfn schema=<head>"`, `application_name`), so a starting node sees which
schemas the running nodes use, without a table to keep up to date; and the database keeps, in
`schema_compat`, the oldest code schema that may run against it (`floor`): the newest incompatible migration
it has been through.

`plan` is the decision, pure: from the migration graph, the database's revision, its floor and the running
nodes' schemas, one of

* `current` — the database is at this node's head: run;
* `migrate` — it is older, and no running node would break: upgrade, then run;
* `join` — it is newer (migrated by a newer polyfn) but still allows this node's schema: run, do not migrate;
* a refusal, one line that says what to do: a migration older nodes cannot live with while such nodes run,
  or a database this node's code is too old for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: what nodes put in `application_name` before their code's schema (the head migration)
APP_PREFIX = "polyfn schema="


class SchemaMismatch(Exception):
    """This node's code and the shared database's schema cannot run together (see `plan`)."""


@dataclass(frozen=True)
class Migration:
    revision: str
    down: str | None
    compatible: bool = True  # nodes of `down`'s schema keep working once this has run


@dataclass(frozen=True)
class Plan:
    action: str  # current | migrate | join | refuse
    message: str = ""
    floor: str = ""  # migrate: the floor to record afterwards


def read_graph(versions_dir: Path) -> dict[str, Migration]:
    """The migrations in `versions_dir`, from each file's `revision`, `down_revision` and `compatible`."""
    out = {}
    for f in versions_dir.glob("*.py"):
        source = f.read_text()
        rev = re.search(r"^revision(?::[^=]*)?=\s*[\"']([^\"']+)", source, re.M)
        down = re.search(r"^down_revision(?::[^=]*)?=\s*[\"']([^\"']+)", source, re.M)
        compatible = re.search(r"^compatible\s*(?::[^=]*)?=\s*(True|False)", source, re.M)
        if rev:
            out[rev[1]] = Migration(rev[1], down[1] if down else None, compatible is None or compatible[1] == "True")
    return out


def chain(graph: dict[str, Migration]) -> list[Migration]:
    """The migrations from the first to the head (the graph is linear: one head, each revision one parent)."""
    children = {m.down: m for m in graph.values()}
    out = []
    m = children.get(None)
    while m is not None:
        out.append(m)
        m = children.get(m.revision)
    return out


def floor_of(migrations: list[Migration]) -> str:
    """The oldest code schema that runs against a database migrated through `migrations`: the newest
    incompatible one (code older than it breaks), else the first."""
    incompatible = [m.revision for m in migrations if not m.compatible]
    return incompatible[-1] if incompatible else migrations[0].revision


def plan(graph: dict[str, Migration], db: set[str], floor: str | None, live: Iterable[str]) -> Plan:
    """What a node with migrations `graph` does with a database at revisions `db` (empty: a new database)
    whose recorded floor is `floor`, while nodes run with the code schemas `live` (their heads)."""
    order = chain(graph)
    head = order[-1].revision
    if db == {head}:
        return Plan("current")
    unknown = sorted(r for r in db if r not in graph)
    if unknown:  # migrated by a newer polyfn
        if floor is not None and floor in graph:
            return Plan("join", f"the database's schema {', '.join(unknown)} is newer than this node's ({head}) "
                                "and allows it")
        needs = f"schema {floor} or newer" if floor else "a newer polyfn"
        return Plan("refuse", f"the shared database's schema ({', '.join(unknown)}) was migrated by a newer polyfn "
                              f"and needs {needs}; this node's code has schema {head}: run the cluster's polyfn "
                              "version on this node (see docs/operations.md, \"Upgrades\")")
    at = max((i for i, m in enumerate(order) if m.revision in db), default=-1)
    pending = order[at + 1:]
    incompatible = [m.revision for m in pending if not m.compatible]
    if incompatible:
        before = sorted(s for s in set(live) if _index(order, s) < _index(order, incompatible[-1]))
        if before:
            return Plan("refuse", f"migration {incompatible[-1]} cannot run while older nodes use the shared database "
                                  f"(nodes running schema {', '.join(before)} are connected; they would fail once it "
                                  "ran): stop every node of the cluster, then start this version (Helm: "
                                  "--set cluster.updateStrategy=Recreate); see docs/operations.md, \"Upgrades\"")
    return Plan("migrate", floor=floor_of(order))


def _index(order: list[Migration], revision: str) -> int:
    """Position of `revision` in the chain; a schema this node does not know counts as newest."""
    for i, m in enumerate(order):
        if m.revision == revision:
            return i
    return len(order)


def schemas_in(app_names: Iterable[str | None]) -> set[str]:
    """The code schemas in connections' `application_name`s (`APP_PREFIX` + the head; others ignored)."""
    return {n[len(APP_PREFIX):] for n in app_names if n and n.startswith(APP_PREFIX)}
