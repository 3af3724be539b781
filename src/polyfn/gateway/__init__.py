"""The HTTP trigger hot path: `ANY /fn/{name}[/{path}]`, raw ASGI."""

from polyfn.gateway.asgi import Gateway

__all__ = ["Gateway"]
