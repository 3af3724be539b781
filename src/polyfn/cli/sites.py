"""`polyfn sites …`: static sites served by the node at /sites/NAME/ (cache headers, SPA fallback)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import local_time, out, write_json

sites_app = typer.Typer(help="Static sites (a built web page) served by the node at /sites/NAME/.",
                        no_args_is_help=True)


@sites_app.command("deploy")
def deploy(ctx: typer.Context,
           directory: Annotated[Path, typer.Argument(help="The built site (with index.html at its top).",
                                                     exists=True, file_okay=False)],
           name: Annotated[str, typer.Option("--name", envvar="POLYFN_SITE_NAME", help="The site's name (its URL).")],
           spa: Annotated[bool, typer.Option("--spa/--no-spa", envvar="POLYFN_SITE_SPA",
                                             help="Answer index.html for unknown paths without an extension.")] = True,
           as_json: Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off",
                                                 help="Print the raw JSON.")] = False) -> None:
    """Upload DIR as site NAME; it replaces the previous files at once."""
    state: State = ctx.obj
    files = [p for p in sorted(directory.rglob("*")) if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(directory).parts)]
    if not (directory / "index.html").is_file():
        raise CliError(f"{directory} has no index.html", "deploy the directory your build wrote (dist/, build/ …)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            zf.write(p, p.relative_to(directory).as_posix())
    res = state.client()._json("PUT", f"/v1/sites/{name}", params={"spa": str(spa).lower()},
                               files={"code": ("site.zip", buf.getvalue(), "application/zip")})
    if as_json:
        write_json(res)
        return
    out().print(f"site {res['name']}: {res['files']} files, {res['size']} bytes → "
                f"{state.target.url}{res['url']}")


@sites_app.command("list")
def list_sites(ctx: typer.Context, as_json: Annotated[bool, typer.Option(
        "--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON.")] = False) -> None:
    """List static sites."""
    state: State = ctx.obj
    items = state.client()._json("GET", "/v1/sites")["sites"]
    if as_json:
        write_json(items)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("site", "files", "bytes", "spa", "updated", "url"):
        table.add_column(column)
    for s in items:
        table.add_row(s["name"], str(s["files"]), str(s["size"]), "yes" if s["spa"] else "no",
                      local_time(s["updated_at"]), state.target.url + s["url"])
    out().print(table)


@sites_app.command("delete")
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The site's name.")]) -> None:
    """Delete a static site."""
    state: State = ctx.obj
    state.client()._json("DELETE", f"/v1/sites/{name}")
    out().print(f"deleted site {name}")
