"""`polyfn invoke`: call a function and print its answer as is (or queue the call with --async)."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.text import Text

from polyfn.cli.config import State
from polyfn.cli.errors import FunctionFailed
from polyfn.cli.output import err, out, write_raw
from polyfn.cli.payload import read_payload
from polyfn.events import kinds as event_kinds


def invoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            envvar="POLYFN_INVOKE_DATA",
            metavar="JSON|@FILE|-",
            help="Payload: JSON text, @FILE to read a file, or - to read stdin.",
        ),
    ] = "{}",
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            envvar="POLYFN_INVOKE_RAW",
            show_default="off",
            help="Send the payload as application/octet-stream, without checking it is JSON.",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            envvar="POLYFN_VERBOSE",
            show_default="off",
            help="Print activation id and cold/warm to stderr.",
        ),
    ] = False,
    event: Annotated[
        str | None,
        typer.Option(
            "--event",
            "-E",
            envvar="POLYFN_INVOKE_EVENT",
            metavar="KIND",
            show_default="none: --data is the payload as is",
            help="Send a realistic trigger event built from --data, shaped by the function's flavor. "
            f"Kinds: {', '.join(event_kinds.names())}.",
        ),
    ] = None,
    run_async: Annotated[
        bool,
        typer.Option("--async", envvar="POLYFN_INVOKE_ASYNC", show_default="off",
                     help="Queue the invocation durably and print its activation id "
                     "(see the result with `polyfn activation ID --wait`)."),
    ] = False,
    callback_url: Annotated[
        str | None,
        typer.Option("--callback-url", envvar="POLYFN_INVOKE_CALLBACK_URL", metavar="URL",
                     help="With --async: POST the result there when done (retried).", show_default="none"),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option("--stream", envvar="POLYFN_INVOKE_STREAM", show_default="off",
                     help="Print a streamed response's chunks as they arrive (docs/streaming.md)."),
    ] = False,
) -> None:
    """Invoke a function and print its answer as is."""
    state: State = ctx.obj
    payload = read_payload(data, raw)
    if event is not None and raw:
        raise typer.BadParameter("an event's --data is JSON: drop --raw", param_hint="'--event'")
    if event is not None and event not in event_kinds.names():
        raise typer.BadParameter(
            f"unknown event kind {event!r}: use one of {', '.join(event_kinds.names())}", param_hint="'--event'"
        )
    content_type = "application/octet-stream" if raw else "application/json"
    if run_async:
        activation_id = state.client().invoke_async(name, payload, content_type, callback_url, event=event)
        out().print(activation_id)
        return
    if stream:
        if event is not None:
            raise typer.BadParameter("--stream sends --data as is: drop --event", param_hint="'--stream'")
        _invoke_streaming(state, name, payload, content_type, verbose)
        return
    started = time.perf_counter()
    response = state.client().invoke(name, payload, content_type, event=event)
    elapsed_ms = (time.perf_counter() - started) * 1000
    activation = response.activation_id
    if verbose:
        temperature = {True: "cold", False: "warm", None: "cold/warm unknown"}[response.cold]
        err().print(
            Text(
                f"activation {activation or '?'} · {temperature} · HTTP {response.status} · {elapsed_ms:.1f} ms",
                style="dim",
            )
        )
    write_raw(response.body)
    if response.ok:
        return
    where = f" (activation {activation})" if activation else ""
    hint = (
        f"see its logs with `polyfn logs {name} --activation {activation}`"
        if activation
        else f"see its logs with `polyfn logs {name}`"
    )
    if response.function_error:
        raise FunctionFailed(f"function '{name}' raised an error{where}", hint=hint)
    raise FunctionFailed(f"function '{name}' answered HTTP {response.status}{where}", hint=hint)


def _invoke_streaming(state: State, name: str, payload: bytes, content_type: str, verbose: bool) -> None:
    """`polyfn invoke --stream`: each piece written (and flushed) as it arrives."""
    started = time.perf_counter()
    with state.client().invoke_stream(name, payload, content_type) as (response, pieces):
        if verbose:
            err().print(Text(f"activation {response.activation_id or '?'} · HTTP {response.status} · first byte "
                             f"{(time.perf_counter() - started) * 1000:.1f} ms", style="dim"))
        buffer = getattr(sys.stdout, "buffer", None)
        for piece in pieces:
            if buffer is not None:
                buffer.write(piece)
                buffer.flush()
            else:
                sys.stdout.write(piece.decode("utf-8", "replace"))
                sys.stdout.flush()
    if not response.ok:
        where = f" (activation {response.activation_id})" if response.activation_id else ""
        raise FunctionFailed(f"function '{name}' answered HTTP {response.status}{where}",
                             hint=f"see its logs with `polyfn logs {name}`")
