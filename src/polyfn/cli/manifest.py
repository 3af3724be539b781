"""`polyfn deploy -f FILE`: deploy every function a definition file declares, and say what became of its
triggers (created, served, or skipped and why — never silently).

The file is parsed here, on the client (`polyfn.manifests`), because the code folders it points at are
local; each function is then deployed through the ordinary `/v1/functions` API.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import err, out
from polyfn.manifests import ManifestError, Plan, PlannedFunction, TriggerDecl, load
from polyfn.manifests.model import trigger_id


def parse_params(values: Iterable[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--param {item!r} is not NAME=VALUE", "e.g. --param TableName=orders")
        params[key] = value
    return params


def describe_trigger(t: TriggerDecl) -> str:
    from polyfn.triggers.redact import redact

    c = {k: v for k, v in redact(t.config).items() if v not in (None, [], {}, "")}
    detail = ", ".join(f"{k}={v}" for k, v in c.items())
    return f"{t.kind}({detail})" if detail else t.kind


SKIP_REASON = "this polyfn server has no trigger API yet (cron, topic and storage triggers come with their issues)"


def every_to_cron(seconds: int) -> str:
    """An interval as a cron schedule (5 fields, or 6 with seconds last); ValueError when it has no exact one."""
    if seconds <= 0:
        raise ValueError("the interval must be positive")
    for unit, fmt, limit in ((86400, "0 0 */{} * *", 31), (3600, "0 */{} * * *", 24), (60, "*/{} * * * *", 60),
                             (1, "* * * * * */{}", 60)):
        if seconds % unit == 0 and seconds // unit < limit:
            n = seconds // unit
            return fmt.format(n) if n > 1 else fmt.replace("*/{}", "*")
    raise ValueError(f"every {seconds} s has no exact cron schedule")


def to_polyfn_trigger(t: TriggerDecl) -> tuple[str, dict[str, Any]]:
    """(kind, config) for polyfn's trigger API (`POST /v1/functions/NAME/triggers`); ValueError if impossible."""
    c = t.config
    if t.native:
        return t.kind, dict(c)
    if t.kind == "cron":
        cfg: dict[str, Any] = {"schedule": c["cron"] if "cron" in c else every_to_cron(int(c["every"]))}
        if c.get("timezone"):
            cfg["timezone"] = c["timezone"]
        if "payload" in c:
            cfg["data"] = c["payload"]
        return "cron", cfg
    if t.kind == "queue":
        name = str(c.get("queue") or "")
        name = name.rsplit(":", 1)[-1].rsplit("/", 1)[-1]  # an SQS/MNS ARN or URL names the queue last
        if not name:
            raise ValueError("the queue has no name")
        return "topic", {"topic": name, **({"batch_size": int(c["batch_size"])} if c.get("batch_size") else {})}
    if t.kind == "storage":
        return "storage", {k: v for k, v in c.items() if v not in (None, [], [None], "")}
    raise ValueError(f"no polyfn trigger for {t.kind}")


def create_trigger(client: Any, fn: PlannedFunction, t: TriggerDecl) -> tuple[str, str]:
    """(style, outcome) after asking the server to create `t`; never silent about what did not happen."""
    from polyfn.sdk.client import ApiError

    try:
        kind, config = to_polyfn_trigger(t)
    except (ValueError, KeyError) as e:
        return "yellow", f"skipped: {e}"
    body = {"kind": kind, "config": config, "id": trigger_id(fn.name, t)}
    path = f"/v1/functions/{fn.name}/triggers"
    try:
        try:
            view = client._json("POST", path, json=body)
        except ApiError as e:
            if e.status != 409:
                raise
            client._json("DELETE", f"/v1/triggers/{body['id']}")  # redeploy: replace the file's trigger
            view = client._json("POST", path, json=body)
    except ApiError as e:
        if e.status in (404, 405) and e.code in ("not_found", "method_not_allowed", "http_404"):
            return "yellow", f"skipped: {SKIP_REASON}"
        return "red", f"not created: [{e.code}] {e.message}"
    health = (view or {}).get("health") or {}
    if health.get("state") == "error":
        return "yellow", f"created as {kind} trigger {body['id']}, but its broker is unreachable: {health.get('message')}"
    return "green", f"created as {kind} trigger {body['id']}"


def trigger_lines(client: Any, fn: PlannedFunction) -> list[tuple[str, str]]:
    """(style, text) lines describing each trigger's fate."""
    lines = []
    for t in fn.triggers:
        if t.kind == "http":
            route = t.config.get("path") or t.config.get("route")
            extra = f" (the file's route {route!r} is not used: polyfn serves the function at its own URL)" if route else ""
            lines.append(("dim", f"  trigger http: {client.function_url(fn.name)}{extra}"))
            continue
        style, outcome = create_trigger(client, fn, t)
        lines.append((style, f"  trigger {describe_trigger(t)} {outcome} ({t.where})"))
    lines += remove_stale_triggers(client, fn)
    return lines


def remove_stale_triggers(client: Any, fn: PlannedFunction) -> list[tuple[str, str]]:
    """A redeploy applies the file as it is now: a trigger an earlier deploy of the file made (its id has the
    file's form, `trigger_id`) that the file no longer declares is deleted. Triggers made otherwise stay."""
    import re

    from polyfn.sdk.client import ApiError

    made = re.compile(rf"{re.escape(fn.name[:40].rstrip('-'))}-[a-z]+-[0-9a-f]{{8}}")
    declared = {trigger_id(fn.name, t) for t in fn.triggers if t.kind != "http"}
    try:
        existing = (client._json("GET", f"/v1/functions/{fn.name}/triggers") or {}).get("triggers") or []
    except ApiError:
        return []
    lines = []
    for t in existing:
        tid = str(t.get("id", ""))
        if made.fullmatch(tid) and tid not in declared:
            try:
                client._json("DELETE", f"/v1/triggers/{tid}")
                lines.append(("yellow", f"  trigger {tid} ({t.get('kind')}) deleted: the file no longer declares it"))
            except ApiError as e:
                lines.append(("red", f"  trigger {tid} no longer declared, not deleted: [{e.code}] {e.message}"))
    return lines


def print_plan(plan: Plan) -> None:
    console = out()
    console.print(Text(f"{plan.source} ({plan.format}): {len(plan.functions)} function(s)", style="bold"))
    for note in plan.notes:
        console.print(Text(f"  note: {note}", style="dim"))
    for bucket in plan.buckets:
        console.print(Text(f"- bucket {bucket}"))
    for t in plan.tables:
        console.print(Text(f"- table {t['name']} (key {t['key']['name']}"
                           + (f", range {t['range']['name']})" if "range" in t else ")")))
    for fn in plan.functions:
        code = fn.code_dir if fn.code_dir else "inline code"
        console.print(Text(f"- {fn.name} from {code}: {fn.spec}"))
        if fn.error:
            console.print(Text(f"  cannot deploy: {fn.error}", style="red"))
        for note in fn.notes:
            console.print(Text(f"  note: {note}", style="dim"))
        for table, access in fn.grants:
            console.print(Text(f"  {access} table {table}", style="dim"))
        for t in fn.triggers:
            console.print(Text(f"  trigger {describe_trigger(t)} ({t.where})", style="dim"))


def make_resources(state: State, client: Any, plan: Plan) -> None:
    """The buckets and tables a `polyfn: 1` file declares, made before its functions (existing ones are kept
    as they are: a redeploy never empties them)."""
    if not plan.buckets and not plan.tables:
        return
    from polyfn.sdk.db import DbClient, DbError
    from polyfn.sdk.storage import StorageClient

    console = out()
    if plan.buckets:
        storage = StorageClient.from_server(client)
        for bucket in plan.buckets:
            storage.make_bucket(bucket)
            console.print(Text(f"bucket {bucket}: ready", style="dim"))
    if plan.tables:
        if not state.target.api_key:
            raise CliError("no API key: making the file's tables needs the admin key (see `polyfn doctor`)")
        db = DbClient(state.target.url, state.target.api_key)
        for t in plan.tables:
            keys = [t["key"], *([t["range"]] if "range" in t else [])]
            req = {"TableName": t["name"], "BillingMode": "PAY_PER_REQUEST",
                   "AttributeDefinitions": [{"AttributeName": k["name"], "AttributeType": k["type"]} for k in keys],
                   "KeySchema": [{"AttributeName": k["name"], "KeyType": kt} for k, kt in zip(keys, ("HASH", "RANGE"), strict=False)]}
            try:
                db.call("CreateTable", req)
                console.print(Text(f"table {t['name']}: created", style="dim"))
            except DbError as e:
                if e.kind != "ResourceInUseException":
                    raise CliError(f"tables.{t['name']}: {e.kind}: {e.message}") from None
                console.print(Text(f"table {t['name']}: exists, kept", style="dim"))
        db.close()


def deploy_file(state: State, file: Path, params: dict[str, str], dry_run: bool, only: list[str]) -> None:
    from polyfn.cli.output import print_deployed
    from polyfn.cli.packaging import zip_directory

    try:
        plan = load(file, params)
    except ManifestError as e:
        raise CliError(str(e), "fix the file, or see docs/compat.md for the supported keys") from None
    if only:
        unknown = set(only) - {f.name for f in plan.functions}
        if unknown:
            raise CliError(f"--only {', '.join(sorted(unknown))}: not in {file} "
                           f"(it declares {', '.join(f.name for f in plan.functions)})")
        plan.functions = [f for f in plan.functions if f.name in only]
    if dry_run:
        print_plan(plan)
        return
    console, chatter = out(), err()
    for note in plan.notes:
        chatter.print(Text(f"note: {note}", style="dim"))
    client = state.client()
    make_resources(state, client, plan)
    failed: list[str] = []
    for fn in plan.functions:
        if fn.error:
            console.print(Text(f"not deployed {fn.name}: {fn.error}", style="red"))
            failed.append(fn.name)
            continue
        if fn.files is not None:
            kwargs: dict[str, Any] = {"files": fn.files}
        else:
            assert fn.code_dir is not None
            zip_bytes, count = zip_directory(fn.code_dir)
            if count == 0:
                console.print(Text(f"not deployed {fn.name}: {fn.code_dir} has no files", style="red"))
                failed.append(fn.name)
                continue
            kwargs = {"zip_bytes": zip_bytes}
        chatter.print(Text(f"deploying {fn.name} ({fn.where})", style="dim"))
        try:
            function = client.deploy(fn.spec, on_progress=lambda m: chatter.print(Text(m, style="dim")), **kwargs)
        except Exception as e:
            from polyfn.cli.errors import error_line

            console.print(Text(f"not deployed {fn.name}: {error_line(e, state)}", style="red"))
            failed.append(fn.name)
            continue
        print_deployed(function, client.function_url(fn.name))
        for note in fn.notes:
            console.print(Text(f"  note: {note}", style="dim"))
        for table, access in fn.grants:
            r = client._http.put(f"/v1/db/grants/{fn.name}/{table}", json={"access": access})
            if r.status_code != 200:
                raise CliError(f"{fn.where}.tables: granting {table} to {fn.name} failed: {r.text}")
            console.print(Text(f"  may {'read and write' if access == 'write' else 'read'} table {table}", style="dim"))
        for style, line in trigger_lines(client, fn):
            console.print(Text(line, style=style))
    if failed:
        raise CliError(f"{len(failed)} of {len(plan.functions)} function(s) not deployed: {', '.join(failed)}")
