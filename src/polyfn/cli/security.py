"""`polyfn keys …` (scoped API keys) and `polyfn secret …` (encrypted secrets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import err, local_time, out, write_json

keys_app = typer.Typer(help="Scoped API keys: read < invoke < deploy < admin, optionally for one function.",
                       no_args_is_help=True)
secret_app = typer.Typer(help="Secrets, encrypted at rest, given to functions as files or env vars.",
                         no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    scope: Annotated[str, typer.Option("--scope", envvar="POLYFN_KEY_SCOPE",
                                              help="read | invoke | deploy | admin | ingest (only pushes log lines)")] = "invoke",
    function: Annotated[str | None, typer.Option("--function", envvar="POLYFN_KEY_FUNCTION",
                                                 help="Limit the key to this function.",
                                                 show_default="every function")] = None,
    description: Annotated[str, typer.Option("--description", envvar="POLYFN_KEY_DESCRIPTION",
                                                 show_default="none", help="A note to recognise the key by.")] = "",
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                                    help="Print the raw JSON.")] = False,
) -> None:
    """Create a key. Its secret is printed once: store it now."""
    state: State = ctx.obj
    body = {"scope": scope, "function": function, "description": description}
    res = state.client()._json("POST", "/v1/keys", json=body)
    if as_json:
        typer.echo(json.dumps({"access_key_id": res["access_key_id"],
                               "secret_access_key": res["secret_access_key"]}))
        return
    console = out()
    console.print(f"access_key_id:     {res['access_key_id']}")
    console.print(f"secret_access_key: {res['secret_access_key']}")
    err().print(Text("use it as `Authorization: Bearer ID:SECRET` or as AWS credentials (Lambda and S3 APIs, "
                     "SigV4); the secret is not shown again", style="dim"))


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                                    help="Print the raw JSON.")] = False,
) -> None:
    """List keys (never their secrets)."""
    state: State = ctx.obj
    keys = state.client()._json("GET", "/v1/keys")["keys"]
    if as_json:
        write_json(keys)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("access_key_id", "namespace", "scope", "function", "sigv4", "last used", "state", "description"):
        table.add_column(column)
    for k in keys:
        # sigv4 "no": a key made before secrets were kept encrypted (bearer auth only; make a new one for AWS SDKs)
        table.add_row(k["access_key_id"], k.get("namespace") or "default", k["scope"], k["function"] or "*",
                      "yes" if k.get("sigv4") else "no",
                      local_time(k["last_used_at"]) if k["last_used_at"] else "never",
                      "revoked" if k["revoked_at"] else "live",
                      k["description"] + (f" (instances of {k['owner']})" if k.get("owner") and k["owner"] not in
                                          k["description"] else ""))
    out().print(table)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The access key id.")]) -> None:
    """Revoke a key: it stops working at once on this node, within seconds on the others."""
    state: State = ctx.obj
    state.client()._json("DELETE", f"/v1/keys/{key_id}")
    out().print(f"revoked {key_id}")


@secret_app.command("set")
def secret_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Secret name (letters, digits, '_', '.', '-').")],
    from_file: Annotated[Path | None, typer.Option("--from-file", envvar="POLYFN_SECRET_FILE",
                                                   help="Read the value from this file.",
                                                   show_default="standard input")] = None,
) -> None:
    """Create or replace a secret; the value comes from stdin or a file, never from the command line."""
    state: State = ctx.obj
    if from_file is not None:
        value = from_file.read_text()
    else:
        if sys.stdin.isatty():
            err().print(Text("type the value, then Ctrl-D:", style="dim"))
        value = sys.stdin.read()
    if value.endswith("\n") and from_file is None:
        value = value[:-1]
    if not value:
        raise CliError("empty secret value", "pipe the value in: `printf %s VALUE | polyfn secret set NAME`")
    res = state.client()._json("PUT", f"/v1/secrets/{name}", json={"value": value})
    out().print(f"{'created' if res['created'] else 'updated'} secret {name} "
                "(new instances get the new value)")


@secret_app.command("list")
def secret_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                                    help="Print the raw JSON.")] = False,
) -> None:
    """List secret names (values are never shown)."""
    state: State = ctx.obj
    items = state.client()._json("GET", "/v1/secrets")["secrets"]
    if as_json:
        write_json(items)
        return
    for s in items:
        out().print(f"{s['name']}  (updated {local_time(s['updated_at'])})")


@secret_app.command("delete")
def secret_delete(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a secret (functions that use it fail to start until it is set again)."""
    state: State = ctx.obj
    state.client()._json("DELETE", f"/v1/secrets/{name}")
    out().print(f"deleted secret {name}")
