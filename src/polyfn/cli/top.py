"""`polyfn top`: a live terminal view of every function (rps, p50/p99, errors, cold starts, instances).

The figures come from `GET /v1/stats`, which the server computes from its in-memory per-function history
(10-second slots, see `polyfn.observe.metrics`); `--window` picks how far back "now" reaches.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.output import out, write_json


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def render(stats: dict[str, Any], url: str = "") -> Group:
    """The table for one `GET /v1/stats` answer (a pure function: testable without a terminal)."""
    fns = stats.get("functions", [])
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    for col, right in (("function", False), ("rev", True), ("rps", True), ("p50 ms", True), ("p99 ms", True),
                       ("calls", True), ("errors", True), ("cold", True), ("inst", True), ("busy", True),
                       ("queued", True)):
        table.add_column(col, justify="right" if right else "left", no_wrap=True)
    for f in fns:
        inst = f.get("instances") or {}
        errors = int(f.get("errors") or 0)
        live = int(inst.get("idle", 0)) + int(inst.get("busy", 0)) + int(inst.get("starting", 0))
        table.add_row(
            Text(str(f.get("name")), style="bold" if f.get("deployed", True) else "dim"),
            str(f.get("revision") or "-"),
            f"{float(f.get('rps') or 0):.1f}",
            _ms(f.get("p50_ms")),
            _ms(f.get("p99_ms")),
            str(f.get("invocations", 0)),
            Text(str(errors), style="red" if errors else ""),
            str(f.get("cold_starts", 0)),
            str(live),
            str(inst.get("busy", 0)),
            Text(str(inst.get("queued", 0)), style="yellow" if inst.get("queued") else ""),
        )
    total_rps = sum(float(f.get("rps") or 0) for f in fns)
    head = Text.assemble(("polyfn top", "bold"), f"  {url}  " if url else "  ",
                         (f"{len(fns)} functions · {total_rps:.1f} req/s · window {stats.get('window_s', 60):g} s · "
                          f"{time.strftime('%H:%M:%S', time.localtime(stats.get('now') or time.time()))}", "dim"))
    flows = workflow_table(stats.get("workflows") or [])
    if not fns:
        return Group(head, Text("no functions deployed", style="dim"), *flows)
    return Group(head, table, *flows)


def workflow_table(rows: list[dict[str, Any]]) -> list[Any]:
    """Workflow executions: running on the node, and how those that ended there since it started ended."""
    if not rows:
        return []
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    for col in ("workflow", "kind", "running", "succeeded", "failed", "timed out", "aborted"):
        table.add_column(col, justify="left" if col in ("workflow", "kind") else "right", no_wrap=True)
    for r in rows:
        failed = int(r.get("failed", 0))
        table.add_row(str(r["name"]), str(r.get("kind", "")), Text(str(r.get("running", 0)), style="cyan"),
                      str(r.get("succeeded", 0)), Text(str(failed), style="red" if failed else ""),
                      str(r.get("timed_out", 0)), str(r.get("aborted", 0)))
    return [Text(""), table]


def top(
    ctx: typer.Context,
    interval: Annotated[
        float, typer.Option("--interval", "-n", envvar="POLYFN_TOP_INTERVAL", min=0.2, help="Seconds between refreshes.")
    ] = 2.0,
    window: Annotated[
        float,
        typer.Option("--window", envvar="POLYFN_TOP_WINDOW", min=10, max=3600,
                     help="Seconds of history behind rps, percentiles, errors and cold starts."),
    ] = 60.0,
    once: Annotated[
        bool, typer.Option("--once", envvar="POLYFN_TOP_ONCE", show_default="off",
                           help="Print one snapshot and exit (for scripts).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                           help="With --once: print the raw JSON.")
    ] = False,
) -> None:
    """Live view of every function: requests/s, p50/p99 latency, errors, cold starts, instances (Ctrl-C quits)."""
    state: State = ctx.obj
    client = state.client()
    if once or as_json:
        stats = client.stats(window=window)
        if as_json:
            write_json(stats)
        else:
            out().print(render(stats, state.target.url))
        return
    console = out()
    try:
        with Live(render(client.stats(window=window), state.target.url), console=console,
                  refresh_per_second=4, screen=False, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(client.stats(window=window), state.target.url), refresh=True)
    except KeyboardInterrupt:
        return
