"""Scaling commands: `polyfn prewarm NAME [N]`, and the scaling part of `polyfn describe`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.output import out, write_json


def _kb(value: Any) -> str:
    return "-" if value is None else f"{value / 1024:.1f} MB"


def render_scaling(console: Console, function: dict[str, Any]) -> None:
    """Instances by state, queue, cold starts, evictions, the keep-alive window, the autoscaler's last
    decision, and each live instance's RSS/PSS."""
    sc = function.get("scaling") or {}
    if not sc:
        return
    counts = function.get("instances") or {}
    w = sc.get("keepalive_window") or {}
    d = sc.get("autoscaler")
    lines = [
        f"instances: {counts.get('starting', 0)} starting, {counts.get('idle', 0)} idle, "
        f"{counts.get('busy', 0)} busy; queued {counts.get('queued', 0)}",
        f"instances started {sc.get('cold_starts', 0)} (this revision; pre-warmed ones included), "
        f"evictions {sc.get('evictions', 0)}",
        f"keep-alive: {sc.get('keepalive_policy')} (pre-warm after {w.get('prewarm_s', 0):g} s, "
        f"keep {w.get('keepalive_s', 0):g} s)",
        "autoscaler: " + ("not run yet" if not d else
                          f"desired {d['desired']}{' (PANIC)' if d['panic'] else ''}"
                          f"{'' if d['valid'] else ' (not enough data: holding)'}, "
                          f"avg in-flight {d['stable_avg']:g} (60 s) / {d['panic_avg']:g} (6 s)"),
        f"memory of its instances: RSS {_kb(sc.get('rss_kb'))}, PSS {_kb(sc.get('pss_kb'))}; node "
        f"{(sc.get('node_memory') or {}).get('reserved_mb', 0)} of "
        f"{(sc.get('node_memory') or {}).get('budget_mb', 0)} MB reserved",
    ]
    console.print(Text("scaling", style="bold"))
    for line in lines:
        console.print(Text("  " + line))
    insts = sc.get("instances") or []
    if insts:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("instance", "pid", "state", "served", "idle s", "init ms", "RSS", "PSS"):
            table.add_column(col, justify="left" if col in ("instance", "state") else "right")
        for i in insts:
            table.add_row(i["id"], str(i["pid"]), i["state"], str(i["served"]), f"{i['idle_s']:g}",
                          f"{i['init_ms']:g}", _kb(i.get("rss_kb")), _kb(i.get("pss_kb")))
        console.print(table)


def prewarm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
    instances: Annotated[int, typer.Argument(min=1, help="How many instances should be live.")] = 1,
    as_json: Annotated[
        bool,
        typer.Option("--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON."),
    ] = False,
) -> None:
    """Start instances of a function now, so the next N callers get no cold start (bounded by the
    function's max_instances and the node's memory budget)."""
    state: State = ctx.obj
    result = state.client().prewarm(name, instances)
    if as_json:
        write_json(result)
        return
    text = f"{name}: started {result.get('started', 0)} instance(s)"
    if result.get("note"):
        text += f" ({result['note']})"
    out().print(Text(text))
