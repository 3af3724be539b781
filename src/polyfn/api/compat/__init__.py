"""Vendor wire APIs on the same port as polyfn's own: AWS Lambda, OpenFaaS gateway, OpenWhisk.

Each module keeps one vendor's quirks (paths, auth, error shapes) and calls the node's deployer, invoker
and store like the `/v1` API does. `install` mounts them all; authentication goes through `keys.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from polyfn.server import Node


def install(app: FastAPI, node: Node) -> None:
    from polyfn.api.compat import lambda_api, openfaas, openwhisk

    lambda_api.install(app, node)
    openfaas.install(app, node)
    openwhisk.install(app, node)
