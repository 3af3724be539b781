"""The `polyfn` command: the Typer app, its global options, and the one error-to-exit-code mapping.

Commands live one group per module (`serve`, `deploy`, `functions`, `activations`, `version`) and only raise:
`ApiError` / `ServerUnreachable` from the SDK, `CliError` / `FunctionFailed` from `errors.py`, or
`typer.BadParameter` for usage mistakes. `PolyfnGroup.invoke` catches the rest in one place, prints one
red line that says what went wrong and what to type next, and exits with an `ExitStatus` — so scripts
can tell "not found" from "server down" from "your function raised" without parsing text.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from rich.traceback import Traceback
from typer.core import TyperGroup

from polyfn.cli import (
    activations,
    apps,
    db,
    doctor,
    events,
    functions,
    local,
    namespaces,
    scaling,
    security,
    serve,
    sites,
    storage,
    top,
    usage,
    version,
    workflows,
)
from polyfn.cli import deploy as deploy_cmd
from polyfn.cli import invoke as invoke_cmd
from polyfn.cli.config import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR_TEXT,
    KEY_ENV,
    NAMESPACE_ENV,
    URL_ENV,
    State,
    resolve,
)
from polyfn.cli.errors import CliError, FunctionFailed, error_line  # noqa: F401  (error_line: its old home)
from polyfn.cli.output import err
from polyfn.sdk.client import DEFAULT_URL, ApiError, ServerUnreachable

try:  # Typer >= 0.2x vendors Click; older releases use Click itself.
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click.exceptions import ClickException  # type: ignore[no-redef]


class ExitStatus(IntEnum):
    """Exit codes of `polyfn`; stable, so scripts may rely on them."""

    OK = 0
    ERROR = 1
    USAGE = 2  # produced by Typer for usage errors (bad option, `typer.BadParameter`)
    NOT_FOUND = 3
    AUTH = 4
    SERVER_UNREACHABLE = 5
    FUNCTION_ERROR = 6


#: API error codes that mean "the function failed", not the platform or the request.
FUNCTION_FAILURE_CODES = frozenset(
    {"function_error", "function_crashed", "function_oom", "function_init_failed", "function_timeout"}
)

_PASS_THROUGH: tuple[type[BaseException], ...] = (typer.Exit, typer.Abort, ClickException)


def exit_status(exc: BaseException) -> ExitStatus:
    """The exit status for an exception that escaped a command: the single mapping."""
    if isinstance(exc, ServerUnreachable):
        return ExitStatus.SERVER_UNREACHABLE
    if isinstance(exc, ApiError):
        if exc.status == 401:
            return ExitStatus.AUTH
        if exc.status == 404:
            return ExitStatus.NOT_FOUND
        if exc.code in FUNCTION_FAILURE_CODES:
            return ExitStatus.FUNCTION_ERROR
        return ExitStatus.ERROR
    if isinstance(exc, FunctionFailed):
        return ExitStatus.FUNCTION_ERROR
    return ExitStatus.ERROR


class PolyfnGroup(TyperGroup):
    """The root command group; its `invoke` is where every command's failure is reported."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            state = ctx.obj if isinstance(ctx.obj, State) else None
            console = err()
            if (state and state.debug) or ctx.params.get("debug"):
                console.print(Traceback.from_exception(type(exc), exc, exc.__traceback__))
            console.print(Text(error_line(exc, state), style="red"))
            raise typer.Exit(int(exit_status(exc))) from exc


app = typer.Typer(
    cls=PolyfnGroup,
    name="polyfn",
    help="polyfn: run any cloud's functions on your own machine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar=URL_ENV,
            help="Base URL of the polyfn server.",
            show_default=f"url in <data dir>/server.json, else {DEFAULT_URL}",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=KEY_ENV,
            help="Admin API key sent as a bearer token.",
            show_default="contents of <data dir>/admin.key",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar=DATA_DIR_ENV,
            help="The server's data dir, where server.json and admin.key are found.",
            show_default=DEFAULT_DATA_DIR_TEXT,
            file_okay=False,
        ),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="POLYFN_DEBUG", show_default="off", help="Show tracebacks for errors."
        ),
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            envvar=NAMESPACE_ENV,
            help="The namespace every command acts in (docs/tenancy.md).",
            show_default="the key's own; default for the admin key",
        ),
    ] = None,
) -> None:
    """Resolve where the server is once, for every command (see `polyfn.cli.config`)."""
    directory = data_dir.expanduser() if data_dir else Path(DEFAULT_DATA_DIR_TEXT).expanduser()
    target = resolve(
        directory,
        url=url,
        url_source=_source(ctx, "url", "--url", URL_ENV),
        api_key=api_key,
        key_source=_source(ctx, "api_key", "--api-key", KEY_ENV),
    )
    state = State(target=target, debug=debug, namespace=namespace or None)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _source(ctx: typer.Context, param: str, option: str, env: str) -> str:
    """Name where a value came from, so messages can say "the key came from POLYFN_API_KEY"."""
    source = ctx.get_parameter_source(param)
    return env if source is not None and source.name == "ENVIRONMENT" else option


app.command("serve", rich_help_panel="Server")(serve.serve)
app.command("version", rich_help_panel="Server")(version.version)
app.command("doctor", rich_help_panel="Server")(doctor.doctor)
app.add_typer(security.keys_app, name="keys", rich_help_panel="Access")
app.add_typer(namespaces.ns_app, name="ns", rich_help_panel="Access")
app.add_typer(security.secret_app, name="secret", rich_help_panel="Access")
app.command("deploy", rich_help_panel="Functions")(deploy_cmd.deploy)
app.command("invoke", rich_help_panel="Functions")(invoke_cmd.invoke)
app.command("list", rich_help_panel="Functions")(functions.list_functions)
app.command("describe", rich_help_panel="Functions")(functions.describe)
app.command("delete", rich_help_panel="Functions")(functions.delete)
app.command("new", rich_help_panel="Local development")(local.new)
app.command("run", rich_help_panel="Local development")(local.run_command)
app.command("examples", rich_help_panel="Local development")(local.examples)
app.command("prewarm", rich_help_panel="Functions")(scaling.prewarm)
app.command("activations", rich_help_panel="Activations and logs")(activations.activations)
app.command("activation", rich_help_panel="Activations and logs")(activations.activation)
app.command("cancel", rich_help_panel="Activations and logs")(activations.cancel)
app.command("logs", rich_help_panel="Activations and logs")(activations.logs)
app.command("top", rich_help_panel="Activations and logs")(top.top)
app.command("usage", rich_help_panel="Activations and logs")(usage.usage)
app.add_typer(storage.storage_app, name="storage", rich_help_panel="Storage")
app.add_typer(db.db_app, name="db", rich_help_panel="Storage")
app.add_typer(events.trigger_app, name="trigger", rich_help_panel="Events")
app.add_typer(events.dlq_app, name="dlq", rich_help_panel="Events")
app.command("publish", rich_help_panel="Events")(events.publish)
app.add_typer(workflows.workflow_app, name="workflow", rich_help_panel="Workflows")
app.add_typer(apps.apps_app, name="apps", rich_help_panel="Apps")
app.add_typer(sites.sites_app, name="sites", rich_help_panel="Apps")


def main() -> None:
    """Console-script entry point (`polyfn = "polyfn.cli.main:main"`)."""
    app(prog_name="polyfn")


if __name__ == "__main__":  # pragma: no cover
    main()
