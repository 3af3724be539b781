"""Function commands: list, describe, delete (deploy: cli/deploy.py; invoke: cli/invoke.py)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import err, local_time, out, write_json


def _instances(function: Mapping[str, Any]) -> str:
    counts = function.get("instances") or {}
    text = f"{counts.get('idle', 0)}/{counts.get('busy', 0)}"
    if counts.get("starting"):
        text += f" +{counts['starting']} starting"
    return text


def _limit(value: Any, unit: str) -> str:
    return "-" if value is None else f"{value:g} {unit}" if isinstance(value, float) else f"{value} {unit}"


def list_functions(
    ctx: typer.Context,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON instead of a table."
        ),
    ] = False,
) -> None:
    """List deployed functions."""
    state: State = ctx.obj
    functions = state.client().list_functions()
    if as_json:
        write_json(functions)
        return
    if not functions:
        err().print(Text("no functions yet: deploy one with `polyfn deploy PATH`", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "name",
        "revision",
        "flavor",
        "runtime",
        "memory",
        "timeout",
        "instances (idle/busy)",
        "updated",
    ):
        table.add_column(column, justify="right" if column in ("revision", "memory", "timeout") else "left")
    for function in functions:
        spec = function.get("spec") or {}
        table.add_row(
            str(function.get("name", "?")),
            str(function.get("revision", "?")),
            str(spec.get("flavor", "-")),
            str(spec.get("runtime", "-")),
            _limit(spec.get("memory"), "MB"),
            _limit(spec.get("timeout"), "s"),
            _instances(function),
            local_time(function.get("updated_at")),
        )
    out().print(table)


def describe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON instead of panels."
        ),
    ] = False,
) -> None:
    """Show a function's spec, revisions and instances."""
    state: State = ctx.obj
    client = state.client()
    function = client.get_function(name)
    if as_json:
        write_json(function)
        return
    spec = function.get("spec") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str]] = [
        ("revision", str(function.get("revision", "?"))),
        ("url", client.function_url(name)),
    ]
    rows += [(key, _format_value(key, value)) for key, value in spec.items() if key != "name"]
    rows += [
        ("instances", _instances(function) + " (idle/busy)"),
        ("code sha256", str(function.get("code_sha256", "-"))),
        ("created", local_time(function.get("created_at"))),
        ("updated", local_time(function.get("updated_at"))),
    ]
    for key, value in rows:
        grid.add_row(key, Text(value))
    revisions = Table(box=None, header_style="bold", pad_edge=False, title="revisions", title_justify="left")
    revisions.add_column("number", justify="right")
    revisions.add_column("created")
    revisions.add_column("code sha256")
    for revision in function.get("revisions") or []:
        revisions.add_row(
            str(revision.get("number", "?")),
            local_time(revision.get("created_at")),
            str(revision.get("code_sha256", "-"))[:16],
        )
    console = out()
    console.print(Panel(grid, title=Text(str(function.get("name", name)), style="bold"), expand=False))
    if warning := network_warning(spec):
        console.print(Text(warning, style="yellow"))
    console.print(revisions)
    if function.get("triggers"):
        from polyfn.cli.events import trigger_table

        table = trigger_table(function["triggers"])
        table.title, table.title_justify = "triggers", "left"
        console.print(table)
    from polyfn.cli.scaling import render_scaling

    render_scaling(console, function)


def network_warning(spec: dict[str, Any]) -> str:
    """What `describe` says about a function on the host's own network (an explicit choice)."""
    if spec.get("network") not in ("host", "all"):
        return ""
    return ("warning: network host — this function reaches everything the node can: its loopback services "
            "(PostgreSQL, Redis, NATS …), its private networks and the cloud metadata address. Prefer the default "
            "`egress` with `--allow-net HOST:PORT` or `--allow-net CIDR:PORT` for the services it needs "
            "(docs/security.md).")


_UNITS = {"memory": "MB", "ephemeral_storage": "MB", "timeout": "s", "keepalive": "s"}


def _format_value(key: str, value: Any) -> str:
    """A spec value for the describe panel: env as K=V pairs, limits with their unit."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    if key in _UNITS:
        return _limit(value, _UNITS[key])
    return str(value)


def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            envvar="POLYFN_YES",
            show_default="off",
            help="Do not ask for confirmation (never asked when not a TTY).",
        ),
    ] = False,
) -> None:
    """Delete a function and all its revisions."""
    state: State = ctx.obj
    if (
        not yes
        and sys.stdin.isatty()
        and not typer.confirm(f"delete function '{name}' and all its revisions?")
    ):
        raise CliError(f"'{name}' was not deleted", hint="pass --yes to skip the question")
    result = state.client().delete_function(name)
    out().print(Text(f"deleted {result.get('deleted', name)}"))
