"""`polyfn usage`: metered usage (GB-seconds, invocations, bytes; stored GB-months, database reads and writes,
workflow transitions) by function, day or hour, and an estimated bill."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from polyfn.cli.activations import _since
from polyfn.cli.config import State
from polyfn.cli.output import err, out, write_json
from polyfn.observe import usage as metering


class By(StrEnum):
    function = "function"
    day = "day"
    hour = "hour"


def usage(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", envvar="POLYFN_USAGE_SINCE", metavar="WHEN", help=(
        "From this point: a duration back from now (30d, 12h), epoch seconds or an ISO time (whole hours)."))] = "30d",
    by: Annotated[By, typer.Option("--by", envvar="POLYFN_USAGE_BY",
                                                 help="Group by function, day or hour (UTC).")] = By.function,
    function: Annotated[str | None, typer.Option("--function", envvar="POLYFN_USAGE_FUNCTION",
                                                               show_default="all", help="Only this function.")] = None,
    prices: Annotated[str | None, typer.Option("--prices", envvar="POLYFN_USAGE_PRICES", metavar="TABLE",
                                                            show_default="none", help=(
        "Estimate the bill with a price table: a sample polyfn ships (lambda, alibaba-fc, tencent-scf) or a TOML "
        "file with per_gb_second and per_million_requests (and optionally per_gb_month, per_million_db_reads, "
        "per_million_db_writes, per_thousand_transitions)."))] = None,
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                          help="Print the raw JSON instead of a table.")] = False,
) -> None:
    """Metered usage: invocations, billed GB-seconds and request/response bytes, optionally priced."""
    state: State = ctx.obj
    table = None
    if prices is not None:
        try:
            table = metering.load_prices(prices)  # (a file is read here, on the client, never by the node)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="'--prices'") from None
    report = state.client().usage(since=_since(since), by=by.value, function=function)
    if table is not None:
        report["usage"] = [{**r, "cost": metering.cost(r, table)} for r in report["usage"]]
        report["total"]["cost"] = metering.cost(report["total"], table)
        report["prices"] = table
    if as_json:
        write_json(report)
        return
    if not report["usage"]:
        err().print(Text("no metered usage in that time", style="dim"))
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    columns = [by.value, "invocations", "errors", "GB-s", "billed ms", "req bytes", "resp bytes"]
    # what is metered beyond invocations, shown when there is some (storage, database, workflows)
    more = [(label, k) for label, k in (("GB-month", "gb_months"), ("db reads", "db_reads"),
                                        ("db writes", "db_writes"), ("transitions", "transitions"))
            if report["total"].get(k)]
    columns += [label for label, _ in more]
    if table is not None:
        columns.append(f"cost {table['currency']}")
    rows = [*report["usage"], {by.value: "total", **report["total"]}]
    names = max(len(str(r[by.value])) for r in rows)  # (a narrow terminal wraps the numbers, never the names)
    for c in columns:
        if c == by.value:
            t.add_column(c, justify="left", no_wrap=True, min_width=names)
        else:
            t.add_column(c, justify="right")
    for r in rows:
        cells = [str(r[by.value]), str(r["invocations"]), str(r["errors"]), f"{r['gb_seconds']:.3f}",
                 str(r["billed_ms"]), str(r["req_bytes"]), str(r["resp_bytes"])]
        cells += [f"{r[k]:.3g}" if k == "gb_months" else str(r[k]) for _, k in more]
        if table is not None:
            cells.append(f"{r['cost']:.6f}")
        t.add_row(*cells, style="bold" if r[by.value] == "total" else "")
    out().print(t)
    if table is not None:
        note = "SAMPLE prices, " if table["sample"] else ""
        err().print(Text(f"{note}{table['name']} (as of {table['as_of'] or '?'}): an estimate, without free tiers",
                         style="dim"))
