"""Event commands: `polyfn trigger add|list|delete`, `polyfn dlq list|show|replay|delete`, `polyfn publish`."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from polyfn.cli import storage as storage_cli
from polyfn.cli.config import State
from polyfn.cli.output import err, local_time, out, write_json
from polyfn.cli.payload import read_payload

#: Which option the positional SPEC of `polyfn trigger add` fills, per kind.
SPEC_OPTION = {"cron": "schedule", "topic": "topic", "nats": "subject", "redis": "stream", "amqp": "queue",
               "mqtt": "topic", "kafka": "topic", "log": "stream", "events": "type", "dynamodb": "table"}

trigger_app = typer.Typer(help="Event triggers: cron schedules, topics, brokers, log streams.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue: invocations and messages that failed every retry.",
                      no_args_is_help=True)

JSON_OPT = typer.Option("--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON.")


def parse_options(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a value that parses as JSON (numbers, true, objects) is used as such."""
    config: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE (e.g. -o batch_size=10)", param_hint="'--option'")
        try:
            config[key] = json.loads(value)
        except ValueError:
            config[key] = value
    return config


@trigger_app.command("add")
def trigger_add(
    ctx: typer.Context,
    function: Annotated[str, typer.Argument(metavar="FUNCTION", help="Function to invoke.", show_default=False)],
    kind: Annotated[str, typer.Argument(help="cron, storage, topic, nats, redis, amqp, mqtt, kafka, log, events.",
                                        show_default=False)],
    spec: Annotated[str | None, typer.Argument(
        metavar="SPEC", help="cron: schedule ('*/5 * * * *'); topic/mqtt/kafka: topic; nats: subject; redis: "
        "stream; amqp: queue; log: stream; events: CloudEvent type.", show_default=False)] = None,
    tz: Annotated[str | None, typer.Option("--tz", envvar="POLYFN_TRIGGER_TZ", help="cron: IANA time zone.",
                                           show_default="UTC")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", metavar="JSON", envvar="POLYFN_TRIGGER_DATA",
                                             help="cron: payload delivered with every tick.",
                                             show_default="none")] = None,
    missed: Annotated[str | None, typer.Option("--missed", envvar="POLYFN_TRIGGER_MISSED", help="cron: ticks missed while down: skip or run_once.",
                                               show_default="skip")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", metavar="KEY=VALUE", envvar="POLYFN_TRIGGER_OPTION",
                                                     help="Any other option of the kind (repeat), see docs/triggers.md.",
                                                     show_default="none")] = None,
    trigger_id: Annotated[str | None, typer.Option("--id", envvar="POLYFN_TRIGGER_ID", help="Trigger id.",
                                                   show_default="FUNCTION-KIND-<random>")] = None,
    bucket: Annotated[str | None, storage_cli.BUCKET_OPT] = None,
    table: Annotated[str | None, typer.Option("--table", envvar="POLYFN_TRIGGER_TABLE",
                                              help="dynamodb: the table whose changes invoke the function.",
                                              show_default="none")] = None,
    events: Annotated[str, storage_cli.EVENTS_OPT] = "created",
    prefix: Annotated[str, storage_cli.PREFIX_OPT] = "",
    suffix: Annotated[str, storage_cli.SUFFIX_OPT] = "",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Add a trigger to a function, e.g. `polyfn trigger add report cron '0 8 * * *' --tz Asia/Shanghai` or
    `polyfn trigger add thumbnail storage --bucket images --prefix uploads/`."""
    state: State = ctx.obj
    if kind == "storage":  # object-store notifications live with the store (docs/storage.md)
        if not bucket:
            raise typer.BadParameter("a storage trigger needs --bucket", param_hint="'--bucket'")
        storage_cli.add_storage_trigger(ctx, function, bucket, events, prefix, suffix, as_json, trigger_id)
        return
    if bucket is not None or prefix or suffix:
        raise typer.BadParameter(f"--bucket/--prefix/--suffix are for storage triggers, not {kind}",
                                 param_hint="'--bucket'")
    config = parse_options(option or [])
    if spec is not None:
        config[SPEC_OPTION.get(kind, "spec")] = spec
    if table is not None:
        config["table"] = table
    if tz is not None:
        config["timezone"] = tz
    if missed is not None:
        config["missed"] = missed
    if data is not None:
        config["data"] = json.loads(read_payload(data, raw=False))
    trig = state.client().add_trigger(function, kind, config, trigger_id)
    if as_json:
        write_json(trig)
        return
    line = Text.assemble(("added trigger ", "green"), (trig["id"], "bold"), f" ({kind} → {function})")
    out().print(line)
    health = trig.get("health") or {}
    if health.get("state") == "error":  # added all the same: it reconnects until the broker is back
        err().print(Text(f"  but it cannot reach its broker yet: {health.get('message')} (it keeps retrying; "
                         "see `polyfn trigger list`)", style="yellow"))
    if trig.get("next_fire_iso"):
        out().print(Text(f"  next fire: {trig['next_fire_iso']}"))


def _health(trig: dict[str, Any]) -> Text:
    h = trig.get("health") or {}
    state = str(h.get("state", "?"))
    style = {"connected": "green", "scheduled": "green", "error": "red"}.get(state, "yellow")
    text = Text(state, style=style)
    if h.get("message"):
        text.append(f": {h['message']}", style="dim")
    return text


def trigger_table(triggers: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "function", "kind", "source", "health", "delivered", "dead", "next fire"):
        table.add_column(column, justify="right" if column in ("delivered", "dead") else "left")
    for t in triggers:
        cfg = t.get("config") or {}
        source = cfg.get(SPEC_OPTION.get(str(t.get("kind")), ""), "")
        table.add_row(str(t.get("id")), str(t.get("function")), str(t.get("kind")), str(source), _health(t),
                      str(t.get("delivered", 0)), str(t.get("dead_lettered", 0)),
                      str(t.get("next_fire_iso") or "-"))
    return table


@trigger_app.command("list")
def trigger_list(
    ctx: typer.Context,
    function: Annotated[str | None, typer.Argument(help="Only this function's triggers.",
                                                   show_default="all")] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """List triggers with their health (connected / scheduled / error …) and delivery counts."""
    state: State = ctx.obj
    triggers = state.client().triggers(function)
    storage = _storage_triggers(state, function)
    if as_json:
        write_json(triggers + [{**t, "kind": "storage"} for t in storage])
        return
    if not triggers and not storage:
        err().print(Text("no triggers: add one with `polyfn trigger add FUNCTION KIND SPEC`", style="dim"))
        return
    if triggers:
        out().print(trigger_table(triggers))
    if storage:
        storage_cli.strigger_list(ctx, function, as_json=False)


def _storage_triggers(state: State, function: str | None) -> list[dict[str, Any]]:
    """Storage triggers live with the object store (`/v1/storage/triggers`); empty when it is off."""
    from polyfn.sdk.client import ApiError

    try:
        return state.client()._json("GET", "/v1/storage/triggers",
                                    params={"function": function} if function else {})["triggers"]
    except ApiError:
        return []


@trigger_app.command("delete")
def trigger_delete(ctx: typer.Context,
                   trigger_id: Annotated[str, typer.Argument(metavar="ID", help="Trigger id.", show_default=False)]
                   ) -> None:
    """Delete a trigger (it stops at once; unacknowledged broker messages stay in the broker)."""
    from polyfn.sdk.client import ApiError

    state: State = ctx.obj
    try:
        state.client().delete_trigger(trigger_id)
    except ApiError as e:
        if e.status != 404 or not any(t["id"] == trigger_id for t in _storage_triggers(state, None)):
            raise
        state.client()._json("DELETE", f"/v1/storage/triggers/{trigger_id}")
    out().print(Text(f"deleted trigger {trigger_id}"))


# -- dead-letter queue --------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    function: Annotated[str | None, typer.Argument(help="Only this function's.", show_default="all")] = None,
    limit: Annotated[int, typer.Option("--limit", envvar="POLYFN_DLQ_LIMIT", min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """List dead letters, newest first."""
    state: State = ctx.obj
    entries = state.client().dead_letters(function, limit)
    if as_json:
        write_json(entries)
        return
    if not entries:
        err().print(Text("the dead-letter queue is empty", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "function", "trigger", "attempts", "dead since", "reason"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e.get("id")), str(e.get("function")), str(e.get("trigger")), str(e.get("attempt")),
                      local_time(e.get("dead_at")), str(e.get("reason") or "-"))
    out().print(table)


@dlq_app.command("show")
def dlq_show(ctx: typer.Context,
             entry_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)]) -> None:
    """Show one dead letter: its payload, headers, attempts and last error (JSON)."""
    state: State = ctx.obj
    write_json(state.client().dead_letter(entry_id))


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    entry_ids: Annotated[list[str] | None, typer.Argument(metavar="ID...", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", envvar="POLYFN_DLQ_ALL", show_default="off",
                                     help="Replay every dead letter (of FUNCTION with --function).")] = False,
    function: Annotated[str | None, typer.Option("--function", envvar="POLYFN_DLQ_FUNCTION", show_default="all",
                                                   help="With --all: only this function's.")] = None,
) -> None:
    """Run dead letters again (async, from attempt 1); prints their activation ids."""
    state: State = ctx.obj
    client = state.client()
    ids = list(entry_ids or [])
    if all_:
        ids += [e["id"] for e in client.dead_letters(function, 1000)]
    if not ids:
        raise typer.BadParameter("name dead letters to replay, or pass --all", param_hint="ID")
    for entry_id in ids:
        client.replay_dead_letter(entry_id)
        out().print(Text(f"replaying {entry_id}: `polyfn activation {entry_id} --wait` shows the result"))


@dlq_app.command("delete")
def dlq_delete(ctx: typer.Context,
               entry_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)]) -> None:
    """Drop a dead letter for good."""
    state: State = ctx.obj
    state.client().delete_dead_letter(entry_id)
    out().print(Text(f"deleted dead letter {entry_id}"))


# -- publish ------------------------------------------------------------------------------------------


def publish(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Embedded topic name.", show_default=False)],
    data: Annotated[str, typer.Option("--data", "-d", envvar="POLYFN_PUBLISH_DATA", metavar="JSON|@FILE|-",
                                      help="Message body: JSON text, @FILE or - for stdin.")] = "{}",
    raw: Annotated[bool, typer.Option("--raw", envvar="POLYFN_PUBLISH_RAW", show_default="off", help="Send the body as bytes, unchecked.")] = False,
    attribute: Annotated[list[str] | None, typer.Option("--attr", "-a", metavar="KEY=VALUE", envvar="POLYFN_PUBLISH_ATTR",
                                                        help="Message attribute (repeat).",
                                                        show_default="none")] = None,
) -> None:
    """Publish a message to an embedded topic; every `topic` trigger on it gets it (durably queued)."""
    state: State = ctx.obj
    payload = read_payload(data, raw)
    attrs = {k: str(v) for k, v in parse_options(attribute or []).items()}
    result = state.client().publish(topic, payload, "application/octet-stream" if raw else "application/json",
                                    attrs)
    out().print(Text(f"published {result.get('id')} to {topic} ({result.get('subscribers', 0)} subscriber(s))"))


def wait_for_activation(state: State, activation_id: str, timeout: float, interval: float = 0.2) -> dict[str, Any]:
    """Poll until the activation is final (not pending/running) or `timeout` passes."""
    client = state.client()
    deadline = time.monotonic() + timeout
    while True:
        record = client.activation(activation_id)
        if record.get("status") not in ("pending", "running") or time.monotonic() >= deadline:
            return record
        time.sleep(interval)
