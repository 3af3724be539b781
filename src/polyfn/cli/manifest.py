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

#: Trigger kinds whose API is on this server. HTTP is always on (`/fn/NAME`); the others arrive with the
#: triggers/events issue and are created through its API once it exists (`create_trigger` below).
SERVER_TRIGGERS: frozenset[str] = frozenset()
SKIP_REASON = "this polyfn server has no {kind} trigger API yet (it comes with the events/triggers issue)"


def parse_params(values: Iterable[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--param {item!r} is not NAME=VALUE", "e.g. --param TableName=orders")
        params[key] = value
    return params


def describe_trigger(t: TriggerDecl) -> str:
    c = {k: v for k, v in t.config.items() if v not in (None, [], {}, "")}
    detail = ", ".join(f"{k}={v}" for k, v in c.items())
    return f"{t.kind}({detail})" if detail else t.kind


def trigger_lines(client: Any, fn: PlannedFunction) -> list[tuple[str, str]]:
    """(style, text) lines describing each trigger's fate."""
    lines = []
    for t in fn.triggers:
        if t.kind == "http":
            route = t.config.get("path") or t.config.get("route")
            extra = f" (the file's route {route!r} is not used: polyfn serves the function at its own URL)" if route else ""
            lines.append(("dim", f"  trigger http: {client.function_url(fn.name)}{extra}"))
        elif t.kind in SERVER_TRIGGERS:  # pragma: no cover - no trigger API on this server yet
            client.create_trigger(fn.name, t.kind, t.config)
            lines.append(("green", f"  trigger {describe_trigger(t)}: created ({t.where})"))
        else:
            lines.append(("yellow", f"  trigger {describe_trigger(t)} skipped: {SKIP_REASON.format(kind=t.kind)} "
                                    f"({t.where})"))
    return lines


def print_plan(plan: Plan) -> None:
    console = out()
    console.print(Text(f"{plan.source} ({plan.format}): {len(plan.functions)} function(s)", style="bold"))
    for note in plan.notes:
        console.print(Text(f"  note: {note}", style="dim"))
    for fn in plan.functions:
        code = fn.code_dir if fn.code_dir else "inline code"
        console.print(Text(f"- {fn.name} from {code}: {fn.spec}"))
        if fn.error:
            console.print(Text(f"  cannot deploy: {fn.error}", style="red"))
        for note in fn.notes:
            console.print(Text(f"  note: {note}", style="dim"))
        for t in fn.triggers:
            console.print(Text(f"  trigger {describe_trigger(t)} ({t.where})", style="dim"))


def deploy_file(state: State, file: Path, params: dict[str, str], dry_run: bool, only: list[str]) -> None:
    from polyfn.cli.functions import print_deployed, zip_directory

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
            from polyfn.cli.main import error_line

            console.print(Text(f"not deployed {fn.name}: {error_line(e, state)}", style="red"))
            failed.append(fn.name)
            continue
        print_deployed(function, client.function_url(fn.name))
        for note in fn.notes:
            console.print(Text(f"  note: {note}", style="dim"))
        for style, line in trigger_lines(client, fn):
            console.print(Text(line, style=style))
    if failed:
        raise CliError(f"{len(failed)} of {len(plan.functions)} function(s) not deployed: {', '.join(failed)}")
