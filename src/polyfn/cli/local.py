"""Local development commands: `polyfn new` (scaffold a function), `polyfn run` (invoke one once, no server) and
`polyfn examples` (where the examples that come with polyfn are)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from polyfn.bundled import bundle_dir
from polyfn.cli.errors import CliError, FunctionFailed
from polyfn.cli.output import err, out, write_raw
from polyfn.deploy.errors import DeployError
from polyfn.localrun import EVENT_KINDS, RunError, find_function, invocation, run
from polyfn.manifests import runtimes
from polyfn.scaffold import RUN_ARGS, TEMPLATES, write


def new(
    name: Annotated[str, typer.Argument(help="Function name (also the folder created).", show_default=False)],
    template: Annotated[
        str,
        typer.Option("--template", "-t", envvar="POLYFN_NEW_TEMPLATE",
                     help=f"One of: {', '.join(TEMPLATES)}."),
    ] = "native-python",
    directory: Annotated[
        Path | None,
        typer.Option("--dir", envvar="POLYFN_NEW_DIR", help="Where to create the function.", show_default="./NAME", file_okay=False),
    ] = None,
) -> None:
    """Create a runnable function from a vendor template, with a test and the vendor's descriptor."""
    if template not in TEMPLATES:
        raise typer.BadParameter(f"{template!r} is not a template: use one of {', '.join(TEMPLATES)}",
                                 param_hint="'--template'")
    t = TEMPLATES[template]
    dest = directory or Path(name)
    try:
        files = write(template, name, dest)
    except FileExistsError as e:
        raise CliError(str(e), "choose another name or --dir") from None
    console = out()
    console.print(Text.assemble(("created ", "green"), (str(dest), "bold"), f" ({t.description})"))
    for f in files:
        console.print(Text(f"  {f}", style="dim"))
    try:
        runtimes.resolve(t.flavor, t.language)
    except runtimes.UnsupportedRuntime as e:
        console.print(Text(f"  note: this polyfn cannot run it yet: {e}", style="yellow"))
    console.print(Text(f"  test it:   cd {dest} && {t.test_command}"))
    run_args = RUN_ARGS.get(template, "").replace("%DIR%", str(dest))
    console.print(Text(f"  run it:    polyfn run {dest} {run_args}".rstrip()))
    deploy = f"polyfn deploy -f {dest}" if any(f.name in ("template.yaml", "stack.yml", "serverless.yml", "s.yaml")
                                              for f in files) else f"polyfn deploy {dest}"
    console.print(Text(f"  deploy it: {deploy}"))


def examples(
    copy: Annotated[
        Path | None,
        typer.Option("--copy", envvar="POLYFN_EXAMPLES_COPY", file_okay=False, show_default="print the path only",
                     help="Copy the examples into this new directory (to edit them)."),
    ] = None,
) -> None:
    """Print the directory of the examples that come with polyfn (`examples/` in a checkout, a copy inside an
    installed wheel): `polyfn deploy "$(polyfn examples)/seed/openfaas-reverse" --name reverse`."""
    source = bundle_dir("examples")
    if source is None:
        raise CliError("this installation of polyfn has no examples", "reinstall polyfn from its wheel or a checkout")
    if copy is None:
        typer.echo(str(source))
        return
    if copy.exists():
        raise CliError(f"{copy} already exists", "name a directory that does not exist yet")
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    out().print(Text.assemble(("copied ", "green"), (str(source), "bold"), " to ", (str(copy), "bold")))


def run_command(
    path: Annotated[Path, typer.Argument(exists=True, help="Function folder, source file or definition file.",
                                         show_default=False)],
    event: Annotated[
        str | None,
        typer.Option("--event", "-e", envvar="POLYFN_RUN_EVENT", metavar="FILE|KIND",
                     help=f"A JSON event file, or a sample: {', '.join(EVENT_KINDS)} (storage/queue/timer/log are "
                     "CloudEvents the function's flavor shapes into its vendor's event).",
                     show_default="--data, else {}"),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", envvar="POLYFN_RUN_DATA", help="The JSON payload (or, with --event http, the request body).",
                     show_default="none"),
    ] = None,
    method: Annotated[str, typer.Option("--method", envvar="POLYFN_RUN_METHOD", help="HTTP method with --event http.",
                                       show_default=True)] = "GET",
    http_path: Annotated[str, typer.Option("--path", envvar="POLYFN_RUN_PATH", help="HTTP path and query with --event http.",
                                          show_default=True)] = "/",
    function: Annotated[
        str | None,
        typer.Option("--function", envvar="POLYFN_RUN_FUNCTION", help="Which function of a definition file declaring several.",
                     show_default="the only one"),
    ] = None,
    handler: Annotated[str | None, typer.Option("--handler", envvar="POLYFN_RUN_HANDLER", metavar="MODULE.FUNC", help="Entry point.",
                                                show_default="from the descriptor, else detected")] = None,
    flavor: Annotated[str | None, typer.Option("--flavor", envvar="POLYFN_RUN_FLAVOR", help="Calling convention.",
                                               show_default="from the descriptor, else detected")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", envvar="POLYFN_RUN_PARAM", metavar="NAME=VALUE",
                                                    help="Template parameter or variable.", show_default="none")] = None,
) -> None:
    """Run a function once in a sandboxed instance of a throw-away node (no server needed)."""
    from polyfn.cli.manifest import parse_params

    try:
        fields, files, notes = find_function(path, function, parse_params(param or []))
        inv = invocation(event, data, method, http_path)
    except RunError as e:
        raise CliError(str(e)) from None
    if handler:
        fields["handler"] = handler
    if flavor:
        fields["flavor"] = flavor
    chatter = err()
    for note in notes:
        chatter.print(Text(f"note: {note}", style="dim"))
    try:
        res = run(fields, files, inv, lambda m: chatter.print(Text(m, style="dim")))
    except DeployError as e:
        raise CliError(f"[{e.code}] {e.message}") from None
    act = res.activation
    for ln in act.get("logs", []):
        chatter.print(Text(f"{ln[1]}: {ln[2]}", style="dim"))
    summary = (f"{res.name}: {act.get('status', '?')} (HTTP {res.status}) in {act.get('duration_ms', 0):.1f} ms"
               + (f", cold start {act.get('init_ms', 0):.1f} ms" if act.get("cold") else ""))
    chatter.print(Text(summary, style="green" if act.get("status") == "success" else "red"))
    write_raw(res.body)
    if act.get("status") != "success":
        raise FunctionFailed(f"the function failed ({act.get('status')})", "see its output above")
