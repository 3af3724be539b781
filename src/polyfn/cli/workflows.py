"""`polyfn workflow`: state machines (Amazon States Language) and OpenWhisk-style sequences, their executions.

    polyfn workflow create order order.asl.json        # or --sequence split,count
    polyfn workflow start order -d '{"id": 7}' --wait
    polyfn workflow watch EXECUTION_ID                  # follow the events until it ends
    polyfn workflow history EXECUTION_ID
    polyfn workflow stop EXECUTION_ID
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.output import err, local_time, out, write_json
from polyfn.cli.payload import read_payload

workflow_app = typer.Typer(help="Workflows: state machines (Amazon States Language), sequences, executions.",
                           no_args_is_help=True)
JSON_OPT = typer.Option("--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON.")
_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow", "RUNNING": "cyan"}


def _status(status: str) -> Text:
    return Text(status, style=_STYLE.get(status, ""))


@workflow_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The state machine's name.", show_default=False)],
    file: Annotated[Path | None, typer.Argument(help="Its definition: an Amazon States Language JSON file.",
                                                show_default="none (use --sequence)")] = None,
    sequence: Annotated[str | None, typer.Option("--sequence", envvar="POLYFN_WORKFLOW_SEQUENCE",
                                                 help="Functions to chain instead of a file: a,b,c.",
                                                 show_default="none")] = None,
    type_: Annotated[str, typer.Option("--type", envvar="POLYFN_WORKFLOW_TYPE", help="STANDARD or EXPRESS.")] = "STANDARD",
    cron: Annotated[list[str] | None, typer.Option("--cron", envvar="POLYFN_WORKFLOW_CRON",
                                                   help="Start an execution on this schedule (repeat).",
                                                   show_default="none")] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Create a state machine from a file (or update it: a new revision; running executions keep theirs)."""
    state: State = ctx.obj
    if (file is None) == (sequence is None):
        raise typer.BadParameter("give a definition FILE or --sequence a,b,c (one of them)", param_hint="'FILE'")
    body: dict[str, Any] = {"type": type_}
    if sequence is not None:
        body.update(kind="sequence", definition=[s.strip() for s in sequence.split(",") if s.strip()])
    else:
        assert file is not None
        try:
            body["definition"] = file.read_text()
        except OSError as e:
            raise typer.BadParameter(f"cannot read {file}: {e.strerror or e}", param_hint="'FILE'") from None
    if cron:
        body["schedules"] = [{"cron": c} for c in cron]
    m = state.client().put_workflow(name, body)
    if as_json:
        write_json(m)
        return
    out().print(Text.assemble(("workflow ", "green"), (m["name"], "bold"), f" revision {m['revision']} ({m['arn']})"))
    for s in m.get("schedules", []):
        out().print(Text(f"  schedule: {s['cron']} ({s['timezone']})"))


@workflow_app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """List state machines."""
    ms = ctx.obj.client().workflows()
    if as_json:
        write_json(ms)
        return
    if not ms:
        err().print(Text("no workflows: create one with `polyfn workflow create NAME FILE`", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("name", "kind", "type", "revision", "updated"):
        table.add_column(column)
    for m in ms:
        table.add_row(m["name"], m["kind"], m["type"], str(m["revision"]), local_time(m["updated_at"]))
    out().print(table)


@workflow_app.command("describe")
def describe(ctx: typer.Context, name: Annotated[str, typer.Argument(show_default=False)],
             as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """A state machine's states and its latest executions."""
    m = ctx.obj.client().workflow(name)
    if as_json:
        write_json(m)
        return
    out().print(Text.assemble((m["name"], "bold"), f"  {m['kind']} {m['type']} revision {m['revision']}"))
    for n in m["graph"]["nodes"]:
        nxt = [e["to"].rsplit("/", 1)[-1] for e in m["graph"]["edges"] if e["from"] == n["id"]]
        out().print(Text(f"  {n['id']}  {n['type']}" + (f" → {', '.join(nxt)}" if nxt else "")))
    if m["executions"]:
        out().print(execution_table(m["executions"]))


def execution_table(exs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "name", "status", "started", "stopped"):
        table.add_column(column)
    for e in exs:
        table.add_row(e["id"], e["name"], _status(e["status"]), local_time(e["started_at"]), local_time(e["stopped_at"]))
    return table


@workflow_app.command("delete")
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Delete a state machine (its running executions run to their end)."""
    ctx.obj.client().delete_workflow(name)
    out().print(Text.assemble(("deleted ", "green"), (name, "bold")))


@workflow_app.command("start")
def start(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="The state machine.", show_default=False)],
    data: Annotated[str, typer.Option("--data", "-d", metavar="JSON", envvar="POLYFN_WORKFLOW_DATA",
                                      help="The input: JSON, @FILE or - for stdin.")] = "{}",
    name: Annotated[str | None, typer.Option("--name", envvar="POLYFN_EXECUTION_NAME",
                                             help="The execution's name (starting twice with one name and input "
                                                  "starts it once).", show_default="a UUID")] = None,
    wait: Annotated[bool, typer.Option("--wait", envvar="POLYFN_WORKFLOW_WAIT",
                                       help="Wait for the end and print the output.", show_default="off")] = False,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Start an execution; with --wait print its output (exit code 1 when it fails)."""
    value = json.loads(read_payload(data, raw=False))
    ex = ctx.obj.client().start_execution(workflow, value, name, wait=wait)
    if as_json:
        write_json(ex)
    elif wait and ex["status"] == "SUCCEEDED":
        out().print_json(json.dumps(ex["output"]))
    elif wait:
        err().print(Text.assemble(_status(ex["status"]), f": {ex['error'] or ''} {ex['cause'] or ''}".rstrip()))
    else:
        out().print(Text.assemble(("started ", "green"), (ex["id"], "bold"), f" ({ex['name']})"))
    if wait and ex["status"] != "SUCCEEDED":
        raise typer.Exit(1)


def _event_line(e: dict[str, Any]) -> Text:
    details = next((v for k, v in e.items() if k.endswith("EventDetails")), {}) or {}
    what = details.get("name") or details.get("resource") or details.get("error") or ""
    line = Text.assemble((f"{e['id']:>4} ", "dim"), (time.strftime("%H:%M:%S", time.localtime(e["timestamp"])), "dim"),
                         " ", (e["type"], "bold"))
    if what:
        line.append(f"  {what}")
    if details.get("cause"):
        line.append(f"  {str(details['cause'])[:200]}", style="red")
    return line


@workflow_app.command("history")
def history(ctx: typer.Context, execution: Annotated[str, typer.Argument(help="The execution's id.", show_default=False)],
            as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """An execution's history events."""
    events = ctx.obj.client().execution_history(execution)
    if as_json:
        write_json(events)
        return
    for e in events:
        out().print(_event_line(e))


@workflow_app.command("watch")
def watch(
    ctx: typer.Context,
    execution: Annotated[str, typer.Argument(help="The execution's id.", show_default=False)],
    interval: Annotated[float, typer.Option("--interval", envvar="POLYFN_WATCH_INTERVAL",
                                            help="Seconds between looks.")] = 0.5,
) -> None:
    """Follow an execution's events until it ends; the exit code is 1 unless it succeeded."""
    client = ctx.obj.client()
    after = 0
    while True:
        for e in client.execution_history(execution, after):
            out().print(_event_line(e))
            after = e["id"]
        ex = client.execution(execution)
        if ex["status"] != "RUNNING":
            if client.execution_history(execution, after):
                continue
            out().print(Text.assemble(_status(ex["status"]), "  ", json.dumps(ex["output"]) if ex["output"] is not None
                                      else f"{ex['error'] or ''} {ex['cause'] or ''}".strip()))
            if ex["status"] != "SUCCEEDED":
                raise typer.Exit(1)
            return
        time.sleep(interval)


@workflow_app.command("executions")
def executions(ctx: typer.Context, workflow: Annotated[str, typer.Argument(show_default=False)],
               status: Annotated[str | None, typer.Option("--status", envvar="POLYFN_EXECUTION_STATUS",
                                                          help="RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.",
                                                          show_default="all")] = None,
               as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """A state machine's executions, newest first."""
    exs = ctx.obj.client().executions(workflow, status)
    if as_json:
        write_json(exs)
        return
    out().print(execution_table(exs))


@workflow_app.command("stop")
def stop(ctx: typer.Context, execution: Annotated[str, typer.Argument(help="The execution's id.", show_default=False)],
         error: Annotated[str | None, typer.Option("--error", envvar="POLYFN_STOP_ERROR", help="Error name to record.",
                                                   show_default="none")] = None,
         cause: Annotated[str | None, typer.Option("--cause", envvar="POLYFN_STOP_CAUSE", help="Why.",
                                                   show_default="none")] = None) -> None:
    """Stop a running execution (ABORTED)."""
    ex = ctx.obj.client().stop_execution(execution, error, cause)
    out().print(Text.assemble(("stopped ", "yellow"), (ex["id"], "bold"), "  ", _status(ex["status"])))
