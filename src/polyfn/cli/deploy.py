"""`polyfn deploy`: a file, directory or zip as a new revision of a function, or a definition file with -f
(cli/manifest.py).

It sends only the spec fields the user gave: the server owns the defaults and detects runtime, flavor and
handler from the code, so a CLI-side default would silently override its detection.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import err, print_deployed
from polyfn.cli.packaging import zip_directory
from polyfn.model import FLAVORS, RUNTIMES, FunctionSpec


def _routes(value: str | None) -> list[str] | None:
    return None if value is None else [r.strip() for r in value.split(",") if r.strip()]


def _spec_default(key: str) -> str:
    """Show the server-side default of a spec field in --help without sending it."""
    for field in msgspec.structs.fields(FunctionSpec):
        if field.name == key:
            default = field.default
            return (
                f"{default:g}, set by the server"
                if isinstance(default, float)
                else f"{default}, set by the server"
            )
    return "server default"  # pragma: no cover - every option maps to a spec field


# -- deploy: packaging ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """The code to deploy: inline files (JSON request) or a zip archive (multipart request)."""

    files: dict[str, bytes] | None = None
    zip_bytes: bytes | None = None
    count: int = 0

    @property
    def size(self) -> int:
        if self.zip_bytes is not None:
            return len(self.zip_bytes)
        return sum(len(content) for content in (self.files or {}).values())


def default_name(path: Path) -> str:
    """A function name from a path: file stem or directory name, lowercased, `_` → `-`."""
    base = path.resolve().name if path.is_dir() else path.stem
    return base.lower().replace("_", "-")


def package(path: Path) -> Package:
    """Turn PATH (file, directory or .zip) into what the deploy request carries."""
    if path.is_dir():
        zip_bytes, count = zip_directory(path)
        if count == 0:
            raise typer.BadParameter(f"{path} contains no files to deploy", param_hint="PATH")
        return Package(zip_bytes=zip_bytes, count=count)
    if path.suffix.lower() == ".zip":
        if not zipfile.is_zipfile(path):
            raise typer.BadParameter(f"{path} is not a zip archive", param_hint="PATH")
        with zipfile.ZipFile(path) as archive:
            count = sum(1 for info in archive.infolist() if not info.is_dir())
        return Package(zip_bytes=path.read_bytes(), count=count)
    return Package(files={path.name: path.read_bytes()}, count=1)


def parse_env(values: Iterable[str]) -> dict[str, str]:
    """`K=V` pairs into a dict; the value may itself contain `=`. Anything else is a usage error."""
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(
                f"{item!r} is not KEY=VALUE (e.g. --env LOG_LEVEL=debug)", param_hint="'--env'"
            )
        env[key] = value
    return env


def build_spec(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The spec to send: the name plus exactly the options the user set."""
    spec: dict[str, Any] = {"name": name}
    spec.update({key: value for key, value in options.items() if value is not None and value != {}})
    return spec


# -- deploy: command ---------------------------------------------------------------------------------


def deploy(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            readable=True,
            help="A source file, a directory (zipped without .git, __pycache__, .venv, node_modules, *.pyc) or a .zip.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            envvar="POLYFN_DEPLOY_NAME",
            help="Function name.",
            show_default="file stem or directory name, lowercased, _ → -",
        ),
    ] = None,
    handler: Annotated[
        str | None,
        typer.Option(
            "--handler",
            envvar="POLYFN_DEPLOY_HANDLER",
            metavar="MODULE.FUNC",
            help="Entry point, e.g. handler.handle.",
            show_default="detected from the code",
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            envvar="POLYFN_DEPLOY_RUNTIME",
            help=f"Language runtime: {', '.join(RUNTIMES)}.",
            show_default="detected from the code",
        ),
    ] = None,
    flavor: Annotated[
        str | None,
        typer.Option(
            "--flavor",
            envvar="POLYFN_DEPLOY_FLAVOR",
            help=f"Calling convention the code was written for: {', '.join(FLAVORS)}.",
            show_default="detected from the code",
        ),
    ] = None,
    memory: Annotated[
        int | None,
        typer.Option(
            "--memory",
            envvar="POLYFN_DEPLOY_MEMORY",
            metavar="MB",
            help="Memory limit per instance.",
            show_default=_spec_default("memory"),
        ),
    ] = None,
    ephemeral_storage: Annotated[
        int | None,
        typer.Option(
            "--ephemeral-storage",
            envvar="POLYFN_DEPLOY_EPHEMERAL_STORAGE",
            metavar="MB",
            help="Size of each instance's /tmp, 16-10240 (Lambda's ephemeral storage). A tmpfs: what it holds "
            "counts towards --memory.",
            show_default="the node's POLYFN_TMP_SIZE, 512",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            envvar="POLYFN_DEPLOY_TIMEOUT",
            metavar="SECONDS",
            help="Time limit per invocation.",
            show_default=_spec_default("timeout"),
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            envvar="POLYFN_DEPLOY_CONCURRENCY",
            metavar="N",
            help="Invocations one instance handles at once.",
            show_default=_spec_default("concurrency"),
        ),
    ] = None,
    min_instances: Annotated[
        int | None,
        typer.Option(
            "--min-instances",
            envvar="POLYFN_DEPLOY_MIN_INSTANCES",
            metavar="N",
            help="Instances kept warm even when idle.",
            show_default=_spec_default("min_instances"),
        ),
    ] = None,
    max_instances: Annotated[
        int | None,
        typer.Option(
            "--max-instances",
            envvar="POLYFN_DEPLOY_MAX_INSTANCES",
            metavar="N",
            help="Upper bound on instances.",
            show_default=_spec_default("max_instances"),
        ),
    ] = None,
    keepalive: Annotated[
        float | None,
        typer.Option(
            "--keepalive",
            envvar="POLYFN_DEPLOY_KEEPALIVE",
            metavar="SECONDS",
            help="How long an idle instance is kept.",
            show_default="node default",
        ),
    ] = None,
    keepalive_policy: Annotated[
        str | None,
        typer.Option(
            "--keepalive-policy",
            envvar="POLYFN_DEPLOY_KEEPALIVE_POLICY",
            metavar="fixed|hybrid|adaptive",
            help="Keep-alive policy: fixed (keep idle instances for --keepalive), hybrid (learn the "
            "function's idle times: unload after use, pre-warm before the next call) or adaptive (the window "
            "worth its memory, learned from the function's and the namespace's idle times).",
            show_default="node default",
        ),
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            envvar="POLYFN_DEPLOY_AUTH",
            metavar="anonymous|key|app",
            help="Who may call the HTTP trigger: anyone, holders of an invoke key (x-functions-key), or only "
            "an app's signed-in users through /app/ENV/call/NAME (docs/apps.md).",
            show_default=_spec_default("auth"),
        ),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            envvar="POLYFN_DEPLOY_NETWORK",
            help="Network access: egress (the outside world but not this host, its loopback services or "
            "private/link-local ranges; this node's API and object store relayed), host (the node's own "
            "network: everything it reaches; `all` is the same), polyfn (only this node's API and object "
            "store) or none (loopback only). Enforced by a network namespace (docs/security.md).",
            show_default=_spec_default("network"),
        ),
    ] = None,
    allow_net: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-net",
            envvar="POLYFN_DEPLOY_ALLOW_NET",
            metavar="HOST:PORT|CIDR[:PORTS]",
            help="With network egress or polyfn: what the function may reach anyway (repeatable). HOST:PORT, a "
            "service on this node or its networks, relayed into the instance's namespace (e.g. --allow-net "
            "127.0.0.1:5432 for the node's PostgreSQL); with egress also a CIDR of a private network, routed: "
            "10.1.2.0/24:5432, 10.1.2.0/24:5000-5100 or 10.1.2.0/24 (every TCP/UDP port). Loopback and "
            "link-local ranges are never opened.",
            show_default="none",
        ),
    ] = None,
    retry_attempts: Annotated[
        int | None,
        typer.Option("--retry-attempts", envvar="POLYFN_DEPLOY_RETRY_ATTEMPTS", metavar="N",
                     help="Async/trigger invocations: attempts in all before the dead-letter queue.",
                     show_default=_spec_default("retry_attempts")),
    ] = None,
    retry_backoff: Annotated[
        float | None,
        typer.Option("--retry-backoff", envvar="POLYFN_DEPLOY_RETRY_BACKOFF", metavar="SECONDS",
                     help="First retry delay (doubles per retry, with jitter).",
                     show_default=_spec_default("retry_backoff")),
    ] = None,
    retry_backoff_max: Annotated[
        float | None,
        typer.Option("--retry-backoff-max", envvar="POLYFN_DEPLOY_RETRY_BACKOFF_MAX", metavar="SECONDS",
                     help="Cap on one retry delay.", show_default=_spec_default("retry_backoff_max")),
    ] = None,
    retry_on: Annotated[
        str | None,
        typer.Option("--retry-on", envvar="POLYFN_DEPLOY_RETRY_ON", metavar="CLASSES",
                     help="Comma-separated failures that are retried: timeout,crash,5xx,throttle (or 'none').",
                     show_default="timeout,crash,5xx,throttle"),
    ] = None,
    max_event_age: Annotated[
        float | None,
        typer.Option("--max-event-age", envvar="POLYFN_DEPLOY_MAX_EVENT_AGE", metavar="SECONDS",
                     help="Older async events go to the dead-letter queue instead of running.",
                     show_default=_spec_default("max_event_age")),
    ] = None,
    stream_idle_timeout: Annotated[
        float | None,
        typer.Option("--stream-idle-timeout", envvar="POLYFN_DEPLOY_STREAM_IDLE_TIMEOUT", metavar="SECONDS",
                     help="A streamed response is stopped when the function writes nothing for this long.",
                     show_default=_spec_default("stream_idle_timeout")),
    ] = None,
    stream_max_duration: Annotated[
        float | None,
        typer.Option("--stream-max-duration", envvar="POLYFN_DEPLOY_STREAM_MAX_DURATION", metavar="SECONDS",
                     help="A streamed response is stopped after this long in all.",
                     show_default=_spec_default("stream_max_duration")),
    ] = None,
    h2c: Annotated[
        bool | None,
        typer.Option("--h2c/--no-h2c", envvar="POLYFN_DEPLOY_H2C",
                     help="runtime http: the program speaks h2c (HTTP/2 without TLS; Knative: a port named h2c), so "
                          "Upgrade: h2c and prior-knowledge HTTP/2 at /fn/NAME pass through to it.",
                     show_default="no"),
    ] = None,
    ws_routes: Annotated[
        str | None,
        typer.Option("--ws-routes", envvar="POLYFN_DEPLOY_WS_ROUTES", metavar="ROUTES",
                     help="WebSocket API (ws://NODE/ws/NAME): comma-separated route keys that invoke the function "
                          "($connect, $disconnect, $default and custom ones).",
                     show_default="$connect,$disconnect,$default"),
    ] = None,
    ws_route_selection: Annotated[
        str | None,
        typer.Option("--ws-route-selection", envvar="POLYFN_DEPLOY_WS_ROUTE_SELECTION", metavar="EXPRESSION",
                     help="Where a message's route key is read: $request.body.FIELD.",
                     show_default=_spec_default("ws_route_selection")),
    ] = None,
    ws_responses: Annotated[
        str | None,
        typer.Option("--ws-responses", envvar="POLYFN_DEPLOY_WS_RESPONSES", metavar="ROUTES",
                     help="Comma-separated routes whose answer goes back to the client (two-way; '*' for all).",
                     show_default="$default"),
    ] = None,
    ws_idle_timeout: Annotated[
        float | None,
        typer.Option("--ws-idle-timeout", envvar="POLYFN_DEPLOY_WS_IDLE_TIMEOUT", metavar="SECONDS",
                     help="A WebSocket connection with no message either way for this long is closed (1001).",
                     show_default="the node's POLYFN_WS_IDLE_TIMEOUT, 600"),
    ] = None,
    ws_max_duration: Annotated[
        float | None,
        typer.Option("--ws-max-duration", envvar="POLYFN_DEPLOY_WS_MAX_DURATION", metavar="SECONDS",
                     help="A WebSocket connection is closed (1001) after this long in all.",
                     show_default="the node's POLYFN_WS_MAX_DURATION, 7200"),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            envvar="POLYFN_DEPLOY_ENV",
            metavar="KEY=VALUE",
            help="Environment variable for the function; repeat for more.",
            show_default="none",
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            envvar="POLYFN_DEPLOY_FILE",
            exists=True,
            help="Deploy what a definition file declares: OpenFaaS stack.yml, serverless.yml, SAM template.yaml, "
            "Azure app folder (host.json), Serverless Devs s.yaml (format detected).",
            show_default="none",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            envvar="POLYFN_DEPLOY_PARAM",
            metavar="NAME=VALUE",
            help="With -f: a value for a template parameter or variable; repeat for more.",
            show_default="none",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", envvar="POLYFN_DEPLOY_ONLY", metavar="NAME", help="With -f: deploy only this function; repeat for more.",
                     show_default="all"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", envvar="POLYFN_DEPLOY_DRY_RUN", help="With -f: print the plan, deploy nothing.", show_default="off"),
    ] = False,
) -> None:
    """Deploy a file, directory or zip as a new revision of a function (or a definition file with -f)."""
    state: State = ctx.obj
    if file is not None:
        from polyfn.cli.manifest import deploy_file, parse_params

        if path is not None:
            raise typer.BadParameter("give either PATH or --file, not both", param_hint="PATH")
        deploy_file(state, file, parse_params(param or []), dry_run, only or [])
        return
    if path is None:
        raise typer.BadParameter("give the code to deploy (a file, directory or .zip), or --file", param_hint="PATH")
    env_vars = parse_env(env or [])
    function_name = name or default_name(path)
    spec = build_spec(
        function_name,
        {
            "runtime": runtime,
            "flavor": flavor,
            "handler": handler,
            "memory": memory,
            "ephemeral_storage": ephemeral_storage,
            "timeout": timeout,
            "concurrency": concurrency,
            "min_instances": min_instances,
            "max_instances": max_instances,
            "keepalive": keepalive,
            "keepalive_policy": keepalive_policy,
            "env": env_vars,
            "network": network,
            "allow_net": allow_net or None,
            "auth": auth,
            "retry_attempts": retry_attempts,
            "retry_backoff": retry_backoff,
            "retry_backoff_max": retry_backoff_max,
            "retry_on": None if retry_on is None else [c.strip() for c in retry_on.split(",")
                                                       if c.strip() and c.strip() != "none"],
            "max_event_age": max_event_age,
            "stream_idle_timeout": stream_idle_timeout,
            "stream_max_duration": stream_max_duration,
            "ws_routes": _routes(ws_routes),
            "ws_route_selection": ws_route_selection,
            "ws_responses": _routes(ws_responses),
            "ws_idle_timeout": ws_idle_timeout,
            "ws_max_duration": ws_max_duration,
            "h2c": h2c,
        },
    )
    descriptor = path / "polyfn.json" if path.is_dir() else None
    if descriptor is not None and descriptor.is_file():  # spec fields kept beside the code (`polyfn new`)
        try:
            saved = json.loads(descriptor.read_text())
        except ValueError as e:
            raise CliError(f"{descriptor} is not valid JSON: {e}") from None
        spec = {**saved, **{k: v for k, v in spec.items() if k != "name" or name}}
        function_name = spec["name"]
    code = package(path)
    chatter = err()
    chatter.print(
        Text(f"deploying {function_name} from {path} ({code.count} file(s), {code.size} bytes)", style="dim")
    )
    client = state.client()
    function = client.deploy(
        spec,
        files=code.files,
        zip_bytes=code.zip_bytes,
        on_progress=lambda message: chatter.print(Text(message, style="dim")),
    )
    print_deployed(function, client.function_url(function.get("name", function_name)))
