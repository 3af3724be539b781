"""The web console (`/console`): server-rendered pages, htmx, no build step."""

from polyfn.console.app import build_console

__all__ = ["build_console"]
