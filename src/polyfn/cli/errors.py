"""Exceptions commands raise to say *what* went wrong; `main.py` alone decides the exit code.

Commands never call `sys.exit` or pick numbers: they raise one of these (or let the SDK's
`ApiError` / `ServerUnreachable` through), and the single mapping in `polyfn.cli.main` turns it into
one red line and an `ExitStatus`. Usage mistakes are raised as `typer.BadParameter` instead, which
Typer reports with the command's usage and exit status 2.
"""

from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on; `hint` says what to type next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class FunctionFailed(CliError):
    """The function itself failed (raised, or answered with an error status); its output was printed."""
