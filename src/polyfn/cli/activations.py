"""Activation and log commands: activations, activation, logs.

Log lines print as `TIMESTAMP ACTIVATION[:8] stream line` — one token per field, local time with
milliseconds — so they read well in a terminal and still split with `awk`/`cut` when piped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import err, local_time, log_time, ms, out, write_json

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")

SINCE_HELP = (
    "Only after this point: a duration back from now (30s, 10m, 1h30m, 2d), epoch seconds, or an ISO time."
)

STATUS_STYLES = {
    "success": "green",
    "throttled": "yellow",
    "error": "red",
    "timeout": "red",
    "crashed": "red",
    "oom": "red",
    "init_failed": "red",
}


class Status(StrEnum):
    """Activation statuses as listed in docs/api.md (`GET /v1/activations/{id}`)."""

    success = "success"
    error = "error"
    timeout = "timeout"
    crashed = "crashed"
    oom = "oom"
    init_failed = "init_failed"
    throttled = "throttled"


def parse_since(text: str, now: float) -> float:
    """`--since` to epoch seconds. `now` is passed in so the parsing is testable without a clock.

    A bare number is taken as epoch seconds (what the API speaks); a duration with units counts
    back from `now`; anything `datetime.fromisoformat` accepts is a point in time (local time
    when it has no offset).
    """
    value = text.strip().lower()
    if _DURATION.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))
        return now - seconds
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration (30s, 10m, 1h30m, 2d), epoch seconds or an ISO time"
        ) from None


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--since'") from exc


def format_log_line(entry: Mapping[str, Any]) -> Text:
    """One log record from the API as `TIMESTAMP ACTIVATION[:8] stream line`."""
    stream = str(entry.get("stream") or "-")
    activation = str(entry.get("activation") or "-")[:8]
    return Text.assemble(
        (log_time(entry.get("ts")), "dim"),
        " ",
        (activation, "cyan"),
        " ",
        (stream, "yellow" if stream == "stderr" else "dim"),
        " ",
        str(entry.get("line", "")),
    )


def _status_text(status: Any) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(str(status), ""))


# -- activations ------------------------------------------------------------------------------------


def activations(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Only this function's activations.", show_default="all functions")
    ] = None,
    status: Annotated[
        Status | None,
        typer.Option(
            "--status",
            envvar="POLYFN_ACTIVATIONS_STATUS",
            help="Only activations with this status.",
            show_default="any",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            envvar="POLYFN_ACTIVATIONS_SINCE",
            metavar="WHEN",
            help=SINCE_HELP,
            show_default="no limit",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", envvar="POLYFN_ACTIVATIONS_LIMIT", min=1, max=1000, help="How many, newest first."
        ),
    ] = 20,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON instead of a table."
        ),
    ] = False,
) -> None:
    """List recent activations (invocation records), newest first."""
    state: State = ctx.obj
    records = state.client().activations(
        function=name, status=status.value if status else None, since=_since(since), limit=limit
    )
    if as_json:
        write_json(records)
        return
    if not records:
        err().print(Text("no activations match", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "function", "rev", "start", "duration ms", "cold/warm", "status"):
        table.add_column(column, justify="right" if column in ("rev", "duration ms") else "left")
    for record in records:
        table.add_row(
            str(record.get("id", "?")),
            str(record.get("function", "?")),
            str(record.get("revision", "?")),
            local_time(record.get("start")),
            ms(record.get("duration_ms")),
            "cold" if record.get("cold") else "warm",
            _status_text(record.get("status", "?")),
        )
    out().print(table)


def activation(
    ctx: typer.Context,
    activation_id: Annotated[str, typer.Argument(metavar="ID", help="Activation id.", show_default=False)],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON instead of panels."
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", "-w", envvar="POLYFN_ACTIVATION_WAIT", show_default="off",
                     help="For an async invocation: wait until it is no longer pending or running."),
    ] = False,
    wait_timeout: Annotated[
        float,
        typer.Option("--wait-timeout", envvar="POLYFN_ACTIVATION_WAIT_TIMEOUT", metavar="SECONDS",
                     help="Give up waiting after this long (the current state is printed)."),
    ] = 300.0,
) -> None:
    """Show one activation: timings, result or error, and its log lines."""
    state: State = ctx.obj
    if wait:
        from polyfn.cli.events import wait_for_activation

        record = wait_for_activation(state, activation_id, wait_timeout)
    else:
        record = state.client().activation(activation_id)
    if as_json:
        write_json(record)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status = Text.assemble(
        _status_text(record.get("status", "?")), f" (HTTP {record.get('status_code', '?')})"
    )
    rows: list[tuple[str, Text | str]] = [
        ("function", f"{record.get('function', '?')} revision {record.get('revision', '?')}"),
        ("status", status),
        ("trigger", str(record.get("trigger", "-"))),
        ("instance", str(record.get("instance") or "-")),
        ("start", local_time(record.get("start"))),
        ("cold/warm", "cold" if record.get("cold") else "warm"),
        (
            "timings ms",
            f"total {ms(record.get('duration_ms'))} · wait {ms(record.get('wait_ms'))}"
            f" · init {ms(record.get('init_ms'))} · run {ms(record.get('run_ms'))}",
        ),
    ]
    if record.get("max_memory_mb"):
        rows.append(("max memory used", f"{record['max_memory_mb']:.0f} MB"))
    # Async invocations: attempts, retry schedule, dead-letter reason, callback delivery.
    if record.get("attempts"):
        rows.append(("attempts", str(record["attempts"])))
    if record.get("next_attempt_at"):
        rows.append(("next attempt", local_time(record["next_attempt_at"])))
    if record.get("dead_letter_reason"):
        rows.append(("dead letter", f"{record['dead_letter_reason']} (polyfn dlq replay {record.get('id', '')})"))
    callback = record.get("callback")
    if isinstance(callback, Mapping):
        detail = f": {callback['last_error']}" if callback.get("last_error") else ""
        rows.append(("callback", f"{callback.get('state')} after {callback.get('attempt')} attempt(s){detail}"))
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else Text(value))
    console = out()
    console.print(
        Panel(grid, title=Text(f"activation {record.get('id', activation_id)}", style="bold"), expand=False)
    )
    error = record.get("error")
    if error:
        console.print(Text("error", style="bold red"))
        console.print(Text(_format_error(error)))
    elif record.get("result") not in (None, ""):
        console.print(Text("result", style="bold"))
        console.print(Text(str(record["result"])))
    lines = record.get("logs") or []
    if lines:
        console.print(Text("logs", style="bold"))
        for line in lines:
            console.print(Text.assemble(*_activation_log_parts(line)))


def _format_error(error: Any) -> str:
    """A function's error payload (`errorType`, `errorMessage`, `stackTrace`) as readable text."""
    if not isinstance(error, Mapping):
        return str(error)
    head = ": ".join(str(error[key]) for key in ("errorType", "errorMessage") if error.get(key))
    trace = error.get("stackTrace") or []
    if isinstance(trace, str):
        trace = trace.splitlines()
    # Frames come pre-formatted (Python's traceback style, already indented): print them verbatim.
    body = "\n".join(str(frame).rstrip("\n") for frame in trace)
    if not head:
        head = ", ".join(f"{key}={value}" for key, value in error.items() if key != "stackTrace")
    return f"{head}\n{body}" if body else head


def _activation_log_parts(line: Any) -> list[tuple[str, str] | str]:
    """Activation records carry log lines as `[ts, stream, line]` (or dicts); no id column needed."""
    if isinstance(line, Mapping):
        ts, stream, text = line.get("ts"), line.get("stream"), line.get("line", "")
    elif isinstance(line, Sequence) and not isinstance(line, str) and len(line) >= 3:
        ts, stream, text = line[0], line[1], line[2]
    else:
        ts, stream, text = None, "-", str(line)
    stream = str(stream or "-")
    return [(log_time(ts), "dim"), " ", (stream, "yellow" if stream == "stderr" else "dim"), " ", str(text)]


# -- logs -------------------------------------------------------------------------------------------


def logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name; or `push` to send lines (see below).",
                                        show_default=False)],
    push_args: Annotated[list[str] | None, typer.Argument(
        metavar="[STREAM [FILE]]", help="With `push`: the log stream, and a file of lines (default: stdin).",
        show_default=False)] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            envvar="POLYFN_LOGS_FOLLOW",
            show_default="off",
            help="Keep printing new lines until Ctrl-C.",
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", envvar="POLYFN_LOGS_SINCE", metavar="WHEN", help=SINCE_HELP, show_default="no limit"
        ),
    ] = None,
    activation_id: Annotated[
        str | None,
        typer.Option(
            "--activation",
            envvar="POLYFN_LOGS_ACTIVATION",
            metavar="ID",
            help="Only this activation's lines.",
            show_default="all",
        ),
    ] = None,
    grep: Annotated[
        str | None,
        typer.Option(
            "--grep",
            "-g",
            envvar="POLYFN_LOGS_GREP",
            metavar="REGEX",
            help="Only lines matching this regular expression (Python syntax; (?i) ignores case).",
            show_default="all lines",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            envvar="POLYFN_LOGS_LIMIT",
            min=1,
            metavar="N",
            help="How many recent lines.",
            show_default="server default (200)",
        ),
    ] = None,
) -> None:
    """Print a function's log lines (stdout/stderr of its invocations), oldest first.

    Examples: `polyfn logs hello -f`, `polyfn logs hello --since 10m --grep '(?i)error'`,
    `polyfn logs hello --activation ID`.

    `polyfn logs push STREAM [FILE]` sends lines (a file, or standard input) to a log stream, for `log`
    triggers: `tail -F app.log | polyfn logs push app-events`. It needs only a key of scope `ingest`
    (`polyfn keys create --scope ingest`, then POLYFN_API_KEY=ID:SECRET), which can do nothing else.
    """
    state: State = ctx.obj
    if name == "push" and push_args:
        push_lines(state, push_args)
        return
    if push_args:
        raise CliError(f"unexpected argument(s) {' '.join(push_args)}", "`polyfn logs NAME` takes one function name; "
                       "to send lines: `polyfn logs push STREAM [FILE]`")
    client = state.client()
    since_ts = _since(since)
    console = out()
    if not follow:
        entries = client.logs(name, since=since_ts, activation=activation_id, limit=limit, grep=grep)
        for entry in entries:
            console.print(format_log_line(entry))
        if not entries:
            err().print(Text(f"no log lines for {name}", style="dim"))
        return
    stream = client.follow_logs(name, since=since_ts, activation=activation_id, limit=limit, grep=grep)
    try:
        for entry in stream:
            console.print(format_log_line(entry))
    except KeyboardInterrupt:
        return  # Ctrl-C is how one stops following: not an error
    finally:
        stream.close()
    err().print(Text("log stream closed by the server", style="dim"))


# -- cancel ---------------------------------------------------------------------------------------


def cancel(
    ctx: typer.Context,
    activation_id: Annotated[str, typer.Argument(metavar="ID", help="Activation id (printed by `polyfn invoke "
                                                 "--async`, shown by `polyfn activations`).", show_default=False)],
) -> None:
    """Cancel an invocation: a running one is stopped (its caller gets 499 function_cancelled); an async one
    that has not started goes to the dead-letter queue instead of running (`polyfn dlq replay ID` runs it)."""
    state: State = ctx.obj
    res = state.client()._json("DELETE", f"/v1/activations/{activation_id}")
    what = "stopped while it ran" if res.get("was") == "running" else "cancelled before it ran (in the dead-letter queue)"
    out().print(f"activation {activation_id}: {what}")


PUSH_BATCH_LINES = 1000  # lines per POST (the server also bounds a batch by POLYFN_MAX_PAYLOAD)
PUSH_BATCH_BYTES = 1 << 20


def push_lines(state: State, args: list[str]) -> None:
    """`polyfn logs push STREAM [FILE]`: POST the lines in batches as they come (a `tail -F` pipe streams)."""
    import sys

    if len(args) > 2:
        raise CliError("`polyfn logs push` takes STREAM and at most one FILE", "e.g. polyfn logs push app-events app.log")
    stream = args[0]
    source = open(args[1], encoding="utf-8", errors="replace") if len(args) == 2 else sys.stdin
    client = state.client()
    sent = subscribers = 0
    batch: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size, sent, subscribers
        if batch:
            res = client._json("POST", f"/v1/logs/{stream}", json=batch)
            sent += int(res.get("accepted", len(batch)))
            subscribers = int(res.get("subscribers", 0))
            batch, size = [], 0

    try:
        for line in source:
            line = line.rstrip("\n")
            batch.append(line)
            size += len(line)
            if len(batch) >= PUSH_BATCH_LINES or size >= PUSH_BATCH_BYTES:
                flush()
        flush()
    finally:
        if source is not sys.stdin:
            source.close()
    err().print(f"pushed {sent} line(s) to {stream} ({subscribers} subscribing trigger(s))")
