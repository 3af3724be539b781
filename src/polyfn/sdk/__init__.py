"""Python client for the polyfn control API (`polyfn.sdk.client.Client`)."""

from polyfn.sdk.client import ApiError, Client, InvokeResponse, PolyfnError, ServerUnreachable

__all__ = ["ApiError", "Client", "InvokeResponse", "PolyfnError", "ServerUnreachable"]
