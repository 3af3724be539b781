"""`polyfn serve`: run a node in the foreground.

The CLI only parses options and hands them to `polyfn.server.serve`; everything about building and
running the node lives there. The import happens inside the command so that every other command
starts fast without loading the server's dependencies (FastAPI, SQLAlchemy, uvicorn ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polyfn.cli.config import DATA_DIR_ENV, DEFAULT_DATA_DIR_TEXT, State
from polyfn.cli.errors import CliError


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", envvar="POLYFN_HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", envvar="POLYFN_PORT", min=1, max=65535, help="TCP port to listen on.")
    ] = 8080,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar=DATA_DIR_ENV,
            file_okay=False,
            help="Where functions, activations and admin.key are kept.",
            show_default=f"the global --data-dir ({DEFAULT_DATA_DIR_TEXT})",
        ),
    ] = None,
    storage_port: Annotated[
        int,
        typer.Option(
            "--storage-port", envvar="POLYFN_STORAGE_PORT", min=0, max=65535,
            help="TCP port of the S3-compatible object store (0 disables it).",
        ),
    ] = 9000,
    examples: Annotated[
        bool,
        typer.Option(
            "--examples/--no-examples", envvar="POLYFN_EXAMPLES", help="Deploy the bundled examples at start."
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", envvar="POLYFN_TLS_CERT", exists=True, dir_okay=False,
                     help="Serve HTTPS with this PEM certificate (chain).", show_default="plain HTTP"),
    ] = None,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster/--no-cluster", envvar="POLYFN_CLUSTER",
            help="This node is one of a cluster: refuse to start without the shared PostgreSQL database "
                 "(POLYFN_DATABASE_URL) and NATS JetStream queue (POLYFN_QUEUE_URL).",
        ),
    ] = False,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", envvar="POLYFN_TLS_KEY", exists=True, dir_okay=False,
                     help="Private key (PEM) of --tls-cert.", show_default="plain HTTP"),
    ] = None,
) -> None:
    """Run a polyfn server in the foreground (Ctrl-C stops it)."""
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    state: State = ctx.obj
    directory = data_dir.expanduser() if data_dir else state.target.data_dir
    try:
        from polyfn.server import serve as run_server
    except ImportError as exc:
        raise CliError(
            f"cannot load the server ({exc})",
            hint="reinstall polyfn, or run with `polyfn --debug serve` for the traceback",
        ) from exc
    tls = {"tls_cert": str(tls_cert), "tls_key": str(tls_key)} if tls_cert and tls_key else {}
    cluster_opt = {"cluster": True} if cluster else {}
    _check_settings(host=host, port=port, data_dir=directory, storage_port=storage_port, **cluster_opt, **tls)
    from polyfn.auth.nodekey import NodeKeyMismatch
    from polyfn.store.schema import SchemaMismatch

    try:
        run_server(host=host, port=port, data_dir=directory, examples=examples, storage_port=storage_port,
                   **cluster_opt, **tls)
    except NodeKeyMismatch as exc:
        raise CliError(f"this node cannot join the cluster: {exc}",
                       hint="see docs/operations.md, \"Cluster\" (nodes share node.key)") from None
    except SchemaMismatch as exc:
        raise CliError(f"this node cannot start on this database: {exc}") from None  # (names the docs)


def _check_settings(**kwargs: object) -> None:
    """The node's settings (these options, then POLYFN_* variables) as the server will read them: a bad value
    is one line per setting that names it, not a traceback."""
    from pydantic import ValidationError

    from polyfn.config import Settings

    try:
        Settings(**kwargs)  # type: ignore[arg-type]
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}" if where else msg)
        raise CliError("invalid settings: " + "; ".join(lines),
                       hint="see docs/operations.md for every setting and its POLYFN_* variable") from None
