"""`polyfn version`: the client's version and, when reachable, the server's.

It asks `/healthz`, which needs no key, so the command also works as a quick "is it up?" check
without failing on a missing or wrong key. It never fails because the server is down: reporting
that is its job.
"""

from __future__ import annotations

import typer
from rich.text import Text

from polyfn import __version__
from polyfn.cli.config import State
from polyfn.cli.output import out
from polyfn.sdk.client import ApiError, PolyfnError, ServerUnreachable


def version(ctx: typer.Context) -> None:
    """Show the client's version and the server's, if it is reachable."""
    state: State = ctx.obj
    console = out()
    console.print(f"polyfn {__version__} (client)")
    url = state.target.url
    try:
        health = state.client().health()
    except ServerUnreachable:
        console.print(Text(f"server not reachable at {url} (start one with `polyfn serve`)", style="yellow"))
        return
    except ApiError as exc:
        console.print(Text(f"server at {url} answered error [{exc.code}]: {exc.message}", style="yellow"))
        return
    except PolyfnError as exc:
        console.print(Text(f"server at {url}: {exc}", style="yellow"))
        return
    console.print(
        f"polyfn {health.get('version', '?')} (server at {url}, status {health.get('status', '?')})"
    )
