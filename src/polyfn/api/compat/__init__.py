"""Vendor wire APIs on the same port as polyfn's own: AWS Lambda, OpenFaaS gateway, OpenWhisk.

Each module keeps one vendor's quirks (paths, auth, error shapes) and calls the deployer, invoker
and store it is handed, like the `/v1` API does. `install` mounts them all; authentication goes through `keys.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI


def install(app: FastAPI, *, settings: Any, store: Any, deployer: Any, invoker: Any, recorder: Any, registry: Any,
            queue: Any, keys: Any, delete_function: Any, workflows: Any, admin_key: str, triggers: Any = None,
            entities: Any = None, secret_values: Any = None, namespaces: Any = None) -> None:
    """Each vendor face gets the services it uses (see each class's constructor)."""
    from polyfn.api.compat import lambda_api, openfaas, openwhisk

    shared = dict(settings=settings, store=store, deployer=deployer, invoker=invoker, recorder=recorder, queue=queue,
                  keys=keys, delete_function=delete_function)
    lambda_api.install(app, **shared, registry=registry, workflows=workflows, admin_key=admin_key)
    openfaas.install(app, **shared, registry=registry, secret_values=secret_values, entities=entities,
                     triggers=triggers, namespaces=namespaces)
    openwhisk.install(app, **shared, workflows=workflows, entities=entities, triggers=triggers, namespaces=namespaces)
