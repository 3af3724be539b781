"""`polyfn ns …`: namespaces (tenants) and their quotas (docs/tenancy.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.output import err, local_time, out, write_json
from polyfn.tenancy import QUOTA_NAMES, NamespaceError, parse_quota_args

ns_app = typer.Typer(help="Namespaces: tenants that own functions, keys and their quotas.", no_args_is_help=True)

_QUOTA_HELP = f"A quota NAME=VALUE (repeatable; VALUE none lifts it): {', '.join(QUOTA_NAMES)}."


def _quotas(items: list[str]) -> dict[str, Any]:
    try:
        return parse_quota_args(items)
    except NamespaceError as e:
        raise typer.BadParameter(str(e), param_hint="'--quota'") from None


def _limit(v: Any) -> str:
    return "unlimited" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


@ns_app.command("create")
def ns_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="1-40 characters a-z, 0-9 and '-', starting with a letter.")],
    quota: Annotated[list[str] | None, typer.Option("--quota", envvar="POLYFN_NS_QUOTA", show_default="none",
                                                    help=_QUOTA_HELP)] = None,
    description: Annotated[str, typer.Option("--description", envvar="POLYFN_NS_DESCRIPTION",
                                             show_default="none", help="A note.")] = "",
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                          help="Print the raw JSON.")] = False,
) -> None:
    """Create a namespace (the admin key only)."""
    state: State = ctx.obj
    res = state.client()._json("POST", "/v1/namespaces", json={"name": name, "quotas": _quotas(quota or []),
                                                               "description": description})
    if as_json:
        write_json(res)
        return
    out().print(f"namespace {res['name']} created")
    err().print(Text(f"make its keys with `polyfn --namespace {name} keys create --scope deploy`", style="dim"))


@ns_app.command("list")
def ns_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                          help="Print the raw JSON.")] = False,
) -> None:
    """List the namespaces this key may see (a namespace's key: its own)."""
    state: State = ctx.obj
    found = state.client()._json("GET", "/v1/namespaces")["namespaces"]
    if as_json:
        write_json(found)
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    for c in ("name", "created", "quotas", "description"):
        t.add_column(c)
    for n in found:
        q = ", ".join(f"{k}={_limit(v)}" for k, v in n["quotas"].items() if v is not None) or "none"
        t.add_row(n["name"], local_time(n["created_at"]) if n["created_at"] else "-", q, n["description"])
    out().print(t)


@ns_app.command("describe")
def ns_describe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The namespace.")],
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                          help="Print the raw JSON.")] = False,
) -> None:
    """A namespace's use against each of its quotas."""
    state: State = ctx.obj
    res = state.client()._json("GET", f"/v1/namespaces/{name}")
    if as_json:
        write_json(res)
        return
    out().print(f"namespace {res['name']}" + (f": {res['description']}" if res["description"] else ""))
    t = Table(box=None, header_style="bold", pad_edge=False)
    for c in ("quota", "used", "limit"):
        t.add_column(c, justify="left" if c == "quota" else "right")
    for q, u in res["usage"].items():
        t.add_row(q, "-" if u["used"] is None else _limit(u["used"]), _limit(u["limit"]))
    out().print(t)


@ns_app.command("quota")
def ns_quota(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The namespace.")],
    quota: Annotated[list[str], typer.Argument(help=_QUOTA_HELP)],
) -> None:
    """Set (or lift, with none) quotas of a namespace (the admin key only)."""
    state: State = ctx.obj
    res = state.client()._json("PATCH", f"/v1/namespaces/{name}", json={"quotas": _quotas(quota)})
    out().print(", ".join(f"{k}={_limit(v)}" for k, v in res["quotas"].items()))


@ns_app.command("delete")
def ns_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The namespace.")],
    force: Annotated[bool, typer.Option("--force", envvar="POLYFN_NS_FORCE", show_default="off",
                                        help="Delete even while its invocations run (they finish, or stop at their timeout).")] = False,
) -> None:
    """Delete a namespace and everything it owns: functions, keys, triggers, buckets, tables."""
    state: State = ctx.obj
    res = state.client()._json("DELETE", f"/v1/namespaces/{name}", params={"force": "true"} if force else None)
    gone = ", ".join(f"{len(v)} {k}" if isinstance(v, list) else f"{v} {k}" for k, v in res.items() if k != "deleted")
    out().print(f"namespace {name} deleted ({gone})")
