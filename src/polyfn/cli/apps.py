"""`polyfn apps …`: apps (wx.cloud's `env`, a Firebase project) — origins, sign-in methods, rules, users."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from polyfn.apps.rules import PRESETS
from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import err, local_time, out, write_json

apps_app = typer.Typer(help="Apps for mini-program and web clients: sign-in, origins, security rules, users.",
                       no_args_is_help=True)

_PRESET_HELP = "; ".join(f"{k}: read {r!r}, write {w!r}" for k, (r, w) in PRESETS.items())

Origins = Annotated[list[str] | None, typer.Option(
    "--origin", envvar="POLYFN_APP_ORIGINS", help="A browser origin allowed to call the app (repeat; '*' for any).", show_default="none")]
Anonymous = Annotated[bool | None, typer.Option("--anonymous/--no-anonymous", envvar="POLYFN_APP_ANONYMOUS", help="Allow anonymous sign-in.",
                                                show_default="on for a new app")]
Password = Annotated[bool | None, typer.Option("--password/--no-password", envvar="POLYFN_APP_PASSWORD", help="Allow email + password sign-in.",
                                               show_default="on for a new app")]
Custom = Annotated[str | None, typer.Option(
    "--custom", envvar="POLYFN_APP_CUSTOM", help="The function that signs users in from what the client sends (a wx.login code …).",
    show_default="none")]
AppId = Annotated[str | None, typer.Option("--appid", envvar="POLYFN_APP_APPID", help="The APPID functions see (a mini-program's appid).",
                                           show_default="the app id")]
Rules = Annotated[list[str] | None, typer.Option(
    "--rule", envvar="POLYFN_APP_RULES", help=f"COLLECTION=PRESET security rule (repeat). Presets: {', '.join(PRESETS)}.",
    show_default="creator for every collection")]
MaxUpload = Annotated[int | None, typer.Option("--max-upload", envvar="POLYFN_APP_MAX_UPLOAD", help="Largest uploadFile in bytes.",
                                               show_default="10 MiB")]
AsJson = Annotated[bool, typer.Option("--json", envvar="POLYFN_JSON", show_default="off", help="Print the raw JSON.")]


def _settings(origins: list[str] | None, anonymous: bool | None, password: bool | None, custom: str | None,
              appid: str | None, rules: list[str] | None, max_upload: int | None,
              current: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if origins:
        body["origins"] = origins
    for key, value in (("anonymous", anonymous), ("password", password), ("custom", custom), ("appid", appid),
                       ("max_upload", max_upload)):
        if value is not None:
            body[key] = value
    if rules:
        merged = dict((current or {}).get("rules") or {})
        for item in rules:
            coll, eq, name = item.partition("=")
            if not eq or name not in PRESETS:
                raise typer.BadParameter(f"--rule {item!r}: use COLLECTION=PRESET with a preset of "
                                         f"{', '.join(PRESETS)}")
            read, write = PRESETS[name]
            merged[coll] = {"read": read, "write": write}
        body["rules"] = merged
    return body


def _show(app: dict[str, Any]) -> None:
    c = app["config"]
    methods = [m for m in ("anonymous", "password") if c[m]] + ([f"custom ({c['custom']})"] if c["custom"] else [])
    console = out()
    console.print(f"app:       {app['id']}   (wx.cloud.init({{env: '{app['id']}'}}), appid {app['appid']})")
    console.print(f"sign-in:   {', '.join(methods) or 'none'}")
    console.print(f"origins:   {', '.join(c['origins']) or 'none (only clients without an Origin: mini-programs)'}")
    console.print(f"storage:   bucket {app['bucket']}, uploads up to {c['max_upload']} bytes")
    rules = c["rules"] or {}
    console.print(f"rules:     default read {c['default_rule']['read']!r}, write {c['default_rule']['write']!r}")
    for name, r in rules.items():
        console.print(f"           {name}: read {r['read']!r}, write {r['write']!r}")
    console.print(f"files:     read {c['files']['read']!r}, write {c['files']['write']!r}")
    console.print(f"endpoint:  {app['urls']['base']}   SDK: {app['urls']['sdk']}")


@apps_app.command("create")
def create(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The app id (wx.cloud's env).")],
           origin: Origins = None, anonymous: Anonymous = None, password: Password = None, custom: Custom = None,
           appid: AppId = None, rule: Rules = None, max_upload: MaxUpload = None, as_json: AsJson = False) -> None:
    """Create an app; clients name it as `env` (wx.cloud.init({env: NAME}))."""
    state: State = ctx.obj
    body = {"id": name, **_settings(origin, anonymous, password, custom, appid, rule, max_upload)}
    app = state.client()._json("POST", "/v1/apps", json=body)
    if as_json:
        write_json(app)
        return
    _show(app)
    err().print(Text(f"in a page: <script src=\"{state.target.url}/sdk/polyfn-cloud.js\"></script> then "
                     f"wx.cloud.init({{env: '{name}'}})", style="dim"))


@apps_app.command("update")
def update(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The app id.")],
           origin: Origins = None, anonymous: Anonymous = None, password: Password = None, custom: Custom = None,
           appid: AppId = None, rule: Rules = None, max_upload: MaxUpload = None, as_json: AsJson = False) -> None:
    """Change some settings of an app (the others stay); `--origin` replaces the list."""
    state: State = ctx.obj
    client = state.client()
    current = client._json("GET", f"/v1/apps/{name}")["config"] if rule else None
    body = _settings(origin, anonymous, password, custom, appid, rule, max_upload, current)
    if not body:
        raise CliError("nothing to change", "pass an option, e.g. --origin https://app.example")
    app = client._json("PATCH", f"/v1/apps/{name}", json=body)
    write_json(app) if as_json else _show(app)


@apps_app.command("rule")
def rule_command(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The app id.")],
                 collection: Annotated[str | None, typer.Argument(help="The collection.", show_default="none")] = None,
                 preset: Annotated[str | None, typer.Option("--preset", envvar="POLYFN_RULE_PRESET", help=_PRESET_HELP, show_default="none")] = None,
                 read: Annotated[str | None, typer.Option("--read", envvar="POLYFN_RULE_READ", help="Read rule expression.",
                                                          show_default="none")] = None,
                 write: Annotated[str | None, typer.Option("--write", envvar="POLYFN_RULE_WRITE", help="Write rule expression.",
                                                           show_default="none")] = None,
                 files: Annotated[bool, typer.Option("--files", envvar="POLYFN_RULE_FILES", help="Set the rule of the app's files instead.",
                                                     show_default="off")] = False,
                 default: Annotated[bool, typer.Option("--default", envvar="POLYFN_RULE_DEFAULT", show_default="off",
                                                       help="Set the rule of collections without their own.")] = False,
                 ) -> None:
    """Set who may read and write a collection (or the app's files): a preset or two rule expressions."""
    state: State = ctx.obj
    if preset is not None:
        if preset not in PRESETS:
            raise typer.BadParameter(f"--preset {preset!r}: use one of {', '.join(PRESETS)}")
        read, write = PRESETS[preset]
    if read is None or write is None:
        raise typer.BadParameter("pass --preset, or both --read and --write")
    value = {"read": read, "write": write}
    client = state.client()
    if files or default:
        body: dict[str, Any] = {"files" if files else "default_rule": value}
    elif collection:
        rules = dict(client._json("GET", f"/v1/apps/{name}")["config"]["rules"])
        rules[collection] = value
        body = {"rules": rules}
    else:
        raise typer.BadParameter("name a COLLECTION, or pass --files or --default")
    client._json("PATCH", f"/v1/apps/{name}", json=body)
    what = "files" if files else "collections without a rule" if default else f"collection {collection}"
    out().print(f"{name}: {what}: read {read!r}, write {write!r}")


@apps_app.command("list")
def list_apps(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List apps."""
    state: State = ctx.obj
    apps = state.client()._json("GET", "/v1/apps")["apps"]
    if as_json:
        write_json(apps)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("app", "appid", "sign-in", "origins", "created"):
        table.add_column(column)
    for a in apps:
        c = a["config"]
        methods = [m for m in ("anonymous", "password") if c[m]] + (["custom"] if c["custom"] else [])
        table.add_row(a["id"], a["appid"], ",".join(methods), ",".join(c["origins"]) or "-", local_time(a["created_at"]))
    out().print(table)


@apps_app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The app id.")], as_json: AsJson = False) -> None:
    """Describe an app."""
    state: State = ctx.obj
    app = state.client()._json("GET", f"/v1/apps/{name}")
    write_json(app) if as_json else _show(app)


@apps_app.command("delete")
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The app id.")]) -> None:
    """Delete an app with its users and sessions."""
    state: State = ctx.obj
    state.client()._json("DELETE", f"/v1/apps/{name}")
    out().print(f"deleted app {name}")


@apps_app.command("users")
def users(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The app id.")],
          limit: Annotated[int, typer.Option("--limit", envvar="POLYFN_LIMIT", help="At most this many.", show_default=True)] = 100,
          as_json: AsJson = False) -> None:
    """List an app's users."""
    state: State = ctx.obj
    items = state.client()._json("GET", f"/v1/apps/{name}/users", params={"limit": limit})["users"]
    if as_json:
        write_json(items)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("uid", "provider", "email / openid", "last sign-in", "state"):
        table.add_column(column)
    for u in items:
        table.add_row(u["uid"], u["provider"], u["email"] or u["openid"],
                      local_time(u["last_sign_in_at"]) if u["last_sign_in_at"] else "-",
                      "disabled" if u["disabled"] else "active")
    out().print(table)


@apps_app.command("revoke")
def revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The app id.")],
           uid: Annotated[str, typer.Argument(help="The user's uid.")],
           disable: Annotated[bool, typer.Option("--disable", envvar="POLYFN_REVOKE_DISABLE", help="Also refuse their next sign-ins.",
                                                 show_default="off")] = False) -> None:
    """Sign a user out everywhere: their tokens are refused from now on."""
    state: State = ctx.obj
    res = state.client()._json("POST", f"/v1/apps/{name}/users/{uid}/revoke", params={"disable": str(disable).lower()})
    out().print(f"{uid}: {res['sessions_revoked']} session(s) revoked" + (", user disabled" if disable else ""))

