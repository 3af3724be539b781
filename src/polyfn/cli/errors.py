"""Exceptions commands raise to say *what* went wrong; `main.py` alone decides the exit code.

Commands never call `sys.exit` or pick numbers: they raise one of these (or let the SDK's
`ApiError` / `ServerUnreachable` through), and the single mapping in `polyfn.cli.main` turns it into
one red line and an `ExitStatus`. Usage mistakes are raised as `typer.BadParameter` instead, which
Typer reports with the command's usage and exit status 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyfn.cli.config import KEY_ENV, URL_ENV
from polyfn.sdk.client import ApiError, PolyfnError, ServerUnreachable

if TYPE_CHECKING:
    from polyfn.cli.config import State


class CliError(Exception):
    """A failure the user can act on; `hint` says what to type next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class FunctionFailed(CliError):
    """The function itself failed (raised, or answered with an error status); its output was printed."""


#: What to type next, per stable API error code.
HINTS: dict[str, str] = {
    "function_not_found": "see deployed functions with `polyfn list`",
    "activation_not_found": "see recent activations with `polyfn activations`",
    "invalid_name": "pass a valid name with `--name`",
    "handler_not_found": "name the entry point with `--handler MODULE.FUNC`",
    "module_not_found": "name the entry point with `--handler MODULE.FUNC`",
    "too_many_requests": "retry later, or raise `--max-instances` / `--concurrency` with `polyfn deploy`",
    "function_timeout": "raise the limit with `polyfn deploy PATH --timeout SECONDS`",
    "function_oom": "raise the limit with `polyfn deploy PATH --memory MB`",
    "function_crashed": "see what it printed with `polyfn logs NAME`",
    "function_init_failed": "see what it printed with `polyfn logs NAME`",
    "payload_too_large": "send a smaller payload",
    "code_too_large": "leave data files out of the deployed directory",
    "shutting_down": "the server is stopping; retry once it is back",
    "NoSuchBucket": "see buckets with `polyfn storage ls`, make one with `polyfn storage mb s3://NAME`",
    "NoSuchKey": "see objects with `polyfn storage ls s3://BUCKET/`",
    "BucketNotEmpty": "delete its objects first: `polyfn storage rm -r s3://BUCKET`",
    "invalid_cron": "use 5 cron fields, e.g. '*/5 * * * *' (minute hour day month weekday)",
    "invalid_timezone": "use an IANA zone name such as UTC or Asia/Shanghai",
    "trigger_not_found": "see triggers with `polyfn trigger list`",
    "dead_letter_not_found": "see dead letters with `polyfn dlq list`",
    "app_not_found": "see apps with `polyfn apps list`, make one with `polyfn apps create NAME`",
    "app_exists": "pick another name, or change it with `polyfn apps update NAME`",
}

def error_line(exc: BaseException, state: State | None) -> str:
    """The one line telling the user what went wrong and what to do next."""
    if isinstance(exc, ServerUnreachable):
        return (
            f"cannot reach polyfn at {exc.url}: is `polyfn serve` running? (set {URL_ENV} to point elsewhere)"
        )
    if isinstance(exc, ApiError):
        line = f"error [{exc.code}]: {exc.message}"
        hint = HINTS.get(exc.code)
        if exc.status == 401:
            hint = state.target.auth_hint() if state else f"set {KEY_ENV}"
        return f"{line}; {hint}" if hint else line
    if isinstance(exc, CliError):
        return f"error: {exc.message}; {exc.hint}" if exc.hint else f"error: {exc.message}"
    if isinstance(exc, PolyfnError | OSError):
        return f"error: {exc}"
    return f"unexpected error: {type(exc).__name__}: {exc}; run again with `polyfn --debug ...` for the traceback"
