"""`polyfn storage ...` (buckets, objects, keys, triggers) and `polyfn trigger add NAME storage ...`.

Object commands talk S3 to the storage port with the node's own key (read from `GET /v1/storage` with the
admin key), so nothing needs configuring on the machine that runs `polyfn serve`.
"""

from __future__ import annotations

import mimetypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import err, out, write_json
from polyfn.sdk.storage import StorageClient, StorageError, parse_s3_uri

PROGRESS_MIN = 1024 * 1024  # show a progress bar for transfers at least this large

storage_app = typer.Typer(help="Object storage: buckets, objects, access keys and storage triggers.",
                          no_args_is_help=True)
keys_app = typer.Typer(help="S3 access keys for the object store.", no_args_is_help=True)
strigger_app = typer.Typer(help="Storage triggers: invoke a function when objects change.", no_args_is_help=True)
storage_app.add_typer(keys_app, name="keys")
storage_app.add_typer(strigger_app, name="trigger")

JSON_OPT = typer.Option("--json", envvar="POLYFN_JSON", show_default="off", help="Print JSON.")


def _s3(ctx: typer.Context) -> StorageClient:
    state: State = ctx.obj
    return StorageClient.from_server(state.client())


def _uri(value: str) -> tuple[str, str]:
    try:
        return parse_s3_uri(value)
    except ValueError as e:
        raise typer.BadParameter(f"{e}: write s3://BUCKET/KEY") from None


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Any]:
    """A progress bar on stderr (only for large transfers on a terminal); yields an `advance(n)` callable."""
    console = err()
    if (total is not None and total < PROGRESS_MIN) or not console.is_terminal:
        yield lambda n: None, lambda n: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as p:
        task = p.add_task(label, total=total)
        yield (lambda n: p.advance(task, n)), (lambda n: p.update(task, total=n))


@storage_app.command("mb")
def make_bucket(ctx: typer.Context, uri: Annotated[str, typer.Argument(help="s3://BUCKET")],
                public: Annotated[bool, typer.Option("--public", envvar="POLYFN_STORAGE_MB_PUBLIC", show_default="off",
                                                     help="Anyone may read objects without signing (public-read).")] = False,
                ) -> None:
    """Make a bucket."""
    bucket, _ = _uri(uri)
    _s3(ctx).make_bucket(bucket, public)
    err().print(f"made bucket {bucket}" + (" (public-read)" if public else ""))


@storage_app.command("ls")
def ls(ctx: typer.Context, uri: Annotated[str | None, typer.Argument(help="s3://BUCKET[/PREFIX]; none: buckets")] = None,
       recursive: Annotated[bool, typer.Option("--recursive", "-r", envvar="POLYFN_STORAGE_LS_RECURSIVE", show_default="off",
                                               help="List every key under the prefix.")] = False,
       as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """List buckets, or the objects of a bucket under a prefix."""
    s3 = _s3(ctx)
    if uri is None:
        buckets = s3.list_buckets()
        if as_json:
            write_json(buckets)
            return
        for b in buckets:
            out().print(f"{b['created'][:19].replace('T', ' ')}  s3://{b['name']}")
        if not buckets:
            err().print(Text("no buckets yet: make one with `polyfn storage mb s3://NAME`", style="dim"))
        return
    bucket, prefix = _uri(uri)
    items = list(s3.list_objects(bucket, prefix, "" if recursive else "/"))
    if as_json:
        write_json(items)
        return
    for it in items:
        if "prefix" in it:
            out().print(f"{'PRE':>30}  {it['prefix']}")
        else:
            out().print(f"{(it['last_modified'] or '')[:19].replace('T', ' ')} {it['size']:>10}  {it['key']}")


@storage_app.command("cp")
def cp(ctx: typer.Context, src: Annotated[str, typer.Argument(help="local path or s3://BUCKET/KEY")],
       dst: Annotated[str, typer.Argument(help="local path, s3://BUCKET/KEY (a trailing / keeps the file name), "
                                                 "or - for standard output")],
       content_type: Annotated[str | None, typer.Option("--content-type", envvar="POLYFN_STORAGE_CP_CONTENT_TYPE", show_default="guessed from the name",
                                                        help="Content-Type of an upload.")] = None) -> None:
    """Copy a file to, from or within the object store."""
    s3 = _s3(ctx)
    if src.startswith("s3://") and dst.startswith("s3://"):
        sb, sk = _uri(src)
        db, dk = _uri(dst)
        if not dk or dk.endswith("/"):
            dk += sk.rsplit("/", 1)[-1]
        s3.copy(sb, sk, db, dk)
        err().print(f"copied s3://{sb}/{sk} → s3://{db}/{dk}")
    elif dst.startswith("s3://"):
        path = Path(src)
        if not path.is_file():
            raise CliError(f"{src} is not a file", hint="give the path of a file to upload")
        bucket, key = _uri(dst)
        if not key or key.endswith("/"):
            key += path.name
        ctype = content_type or mimetypes.guess_type(path.name)[0]
        size = path.stat().st_size
        with _progress(f"upload {path.name}", size) as (advance, _):
            etag = s3.put_file(bucket, key, path, ctype, advance)
        err().print(f"uploaded {path} → s3://{bucket}/{key} ({size} bytes, etag {etag})")
    elif src.startswith("s3://"):
        bucket, key = _uri(src)
        if not key:
            raise typer.BadParameter("name an object: s3://BUCKET/KEY")
        if dst == "-":  # standard output, as `aws s3 cp s3://B/K -`
            size = s3.get_stream(bucket, key, sys.stdout.buffer)
            err().print(f"downloaded s3://{bucket}/{key} → standard output ({size} bytes)")
            return
        path = Path(dst)
        if dst.endswith("/") or path.is_dir():
            path = path / key.rsplit("/", 1)[-1]
        with _progress(f"download {key.rsplit('/', 1)[-1]}", None) as (advance, set_total):
            size = s3.get_file(bucket, key, path, advance, set_total)
        err().print(f"downloaded s3://{bucket}/{key} → {path} ({size} bytes)")
    else:
        raise typer.BadParameter("one side must be s3://BUCKET/KEY")


@storage_app.command("rm")
def rm(ctx: typer.Context, uri: Annotated[str, typer.Argument(help="s3://BUCKET/KEY, or s3://BUCKET for the bucket")],
       recursive: Annotated[bool, typer.Option("--recursive", "-r", envvar="POLYFN_STORAGE_RM_RECURSIVE", show_default="off",
                                               help="Delete every object under the prefix (and the bucket when "
                                                    "no prefix is given).")] = False) -> None:
    """Delete an object, every object under a prefix (-r), or an empty bucket."""
    s3 = _s3(ctx)
    bucket, key = _uri(uri)
    if recursive:
        n = 0
        for it in s3.list_objects(bucket, key):
            s3.delete(bucket, it["key"])
            n += 1
        err().print(f"deleted {n} object(s) under s3://{bucket}/{key}")
        if key:
            return
    if not key:
        s3.remove_bucket(bucket)
        err().print(f"removed bucket {bucket}")
        return
    s3.head(bucket, key)  # a clear NoSuchKey instead of S3's silent 204
    s3.delete(bucket, key)
    err().print(f"deleted s3://{bucket}/{key}")


@storage_app.command("presign")
def presign(ctx: typer.Context, uri: Annotated[str, typer.Argument(help="s3://BUCKET/KEY")],
            expires: Annotated[int, typer.Option("--expires", envvar="POLYFN_STORAGE_PRESIGN_EXPIRES", min=1, max=604800, help="Seconds the URL stays valid.")] = 3600,
            put: Annotated[bool, typer.Option("--put", envvar="POLYFN_STORAGE_PRESIGN_PUT", show_default="off (GET)",
                                              help="A URL to upload with (HTTP PUT) instead of download.")] = False,
            ) -> None:
    """Print a presigned URL: anyone holding it may GET (or PUT) that one object until it expires."""
    bucket, key = _uri(uri)
    if not key:
        raise typer.BadParameter("name an object: s3://BUCKET/KEY")
    out().print(_s3(ctx).presign("PUT" if put else "GET", bucket, key, expires))


# -- keys ---------------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(ctx: typer.Context, name: Annotated[str, typer.Option("--name", envvar="POLYFN_STORAGE_KEY_NAME", help="A label for the key.")] = "user",
                scope: Annotated[str, typer.Option("--scope", envvar="POLYFN_STORAGE_KEY_SCOPE",
                                                   help="read (GET/HEAD/list) | invoke (reads and writes)")] = "invoke",
                as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """Create an access key (an API key of the node: `polyfn keys list` shows it); the secret is shown only now."""
    state: State = ctx.obj
    key = state.client()._json("POST", "/v1/storage/keys", json={"name": name, "scope": scope})
    if as_json:
        write_json({"access_key_id": key["access_key_id"], "secret_access_key": key["secret_access_key"]})
        return
    info = state.client()._json("GET", "/v1/storage")
    out().print(f"AWS_ACCESS_KEY_ID={key['access_key_id']}\nAWS_SECRET_ACCESS_KEY={key['secret_access_key']}\n"
                f"AWS_ENDPOINT_URL_S3={info.get('endpoint') or ''}\nAWS_REGION={info.get('region')}")
    err().print(Text("keep the secret now: it is not shown again", style="dim"))


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """List access keys (without secrets)."""
    state: State = ctx.obj
    keys = state.client()._json("GET", "/v1/storage/keys")["keys"]
    if as_json:
        write_json(keys)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for c in ("access key id", "name", "function"):
        table.add_column(c)
    for k in keys:
        table.add_row(k["access_key_id"], k["name"], k["function"] or "")
    out().print(table)


@keys_app.command("rm")
def keys_rm(ctx: typer.Context, access_key_id: str) -> None:
    """Revoke an access key (requests signed with it fail from now on; same as `polyfn keys revoke`)."""
    state: State = ctx.obj
    state.client()._json("DELETE", f"/v1/storage/keys/{access_key_id}")
    err().print(f"deleted key {access_key_id}")


# -- triggers -----------------------------------------------------------------------------------------


def add_storage_trigger(ctx: typer.Context, function: str, bucket: str, events: str, prefix: str, suffix: str,
                         as_json: bool, trigger_id: str | None = None) -> None:
    state: State = ctx.obj
    body = {"function": function, "bucket": bucket, "events": events, "prefix": prefix, "suffix": suffix}
    if trigger_id is not None:
        body["id"] = trigger_id
    trig = state.client()._json("POST", "/v1/storage/triggers", json=body)
    if as_json:
        write_json(trig)
        return
    err().print(f"trigger {trig['id']}: {','.join(trig['events'])} in s3://{bucket}/{prefix}*{suffix} → {function}")


BUCKET_OPT = typer.Option("--bucket", envvar="POLYFN_TRIGGER_BUCKET", help="The bucket to watch.")
EVENTS_OPT = typer.Option("--events", envvar="POLYFN_TRIGGER_EVENTS", help="created, deleted or created,deleted.")
PREFIX_OPT = typer.Option("--prefix", envvar="POLYFN_TRIGGER_PREFIX", show_default="any", help="Only keys starting with this.")
SUFFIX_OPT = typer.Option("--suffix", envvar="POLYFN_TRIGGER_SUFFIX", show_default="any", help="Only keys ending with this (e.g. .jpg).")


@strigger_app.command("add")
def strigger_add(ctx: typer.Context, function: Annotated[str, typer.Argument(help="Function to invoke.")],
                 bucket: Annotated[str, BUCKET_OPT], events: Annotated[str, EVENTS_OPT] = "created",
                 prefix: Annotated[str, PREFIX_OPT] = "", suffix: Annotated[str, SUFFIX_OPT] = "",
                 as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """Invoke FUNCTION (asynchronously, with retries) when objects in a bucket are created or deleted."""
    add_storage_trigger(ctx, function, bucket, events, prefix, suffix, as_json)


@strigger_app.command("list")
def strigger_list(ctx: typer.Context, function: Annotated[str | None, typer.Argument()] = None,
                  as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """List storage triggers (of one function)."""
    state: State = ctx.obj
    trigs = state.client()._json("GET", "/v1/storage/triggers", params={"function": function} if function else {})
    trigs = trigs["triggers"]
    if as_json:
        write_json(trigs)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for c in ("id", "function", "kind", "source", "events"):
        table.add_column(c)
    for t in trigs:
        table.add_row(t["id"], t["function"], "storage", f"s3://{t['bucket']}/{t['prefix']}*{t['suffix']}",
                      ",".join(t["events"]))
    out().print(table)
    if not trigs:
        err().print(Text("no storage triggers: add one with `polyfn trigger add NAME storage --bucket B`", style="dim"))


@strigger_app.command("rm")
def strigger_rm(ctx: typer.Context, trigger_id: str) -> None:
    """Remove a storage trigger."""
    state: State = ctx.obj
    state.client()._json("DELETE", f"/v1/storage/triggers/{trigger_id}")
    err().print(f"removed trigger {trigger_id}")


__all__ = ["BUCKET_OPT", "EVENTS_OPT", "PREFIX_OPT", "SUFFIX_OPT", "StorageError", "add_storage_trigger", "storage_app"]
