"""How a node's instances reach the node itself: the AWS SDK endpoints their environment names (so
`boto3.client("lambda")`, STS's AssumeRole and `apigatewaymanagementapi` pushes come to this node's port), and,
for `network: polyfn` instances, the relay that lets them reach the node's API and object store (and nothing
else) from their own network namespace (sandbox/relay.py). One of the node's start steps: the relay is made once
the ports are bound, and stopped with the node."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyfn.config import Settings

log = logging.getLogger("polyfn")

#: the AWS SDK services whose endpoint is this node's port (AWS_ENDPOINT_URL_<SERVICE>)
SDK_SERVICES = ("LAMBDA", "STS", "APIGATEWAYMANAGEMENTAPI")


def local_host(host: str) -> str:
    """The address an instance on this machine uses for a node listening on `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class InstanceReach:
    """`sandbox` (NodeSandbox: it gets the relay) and `specs` (InstanceSpecs: the env and relayed URLs);
    `storage_url` says, once the object store has started, where it listens ("" when it does not)."""

    def __init__(self, settings: Settings, sandbox: Any, specs: Any, storage_url: Any):
        self.settings = settings
        self.sandbox = sandbox
        self.specs = specs
        self.storage_url = storage_url
        self.relay: Any = None  # sandbox.relay.NetRelay, once started
        if settings.port:
            url = f"http://{local_host(settings.host)}:{settings.port}"
            for service in SDK_SERVICES:
                specs.instance_env[f"AWS_ENDPOINT_URL_{service}"] = url

    async def start(self) -> None:
        """`network: polyfn`: the relay to the node's API and object store ports, if any is bound."""
        from polyfn.sandbox.relay import NetRelay, endpoints

        s = self.settings
        url = self.storage_url()
        storage = (s.storage_host or s.host, int(url.rsplit(":", 1)[1])) if url else ("", 0)
        targets, urls = endpoints([(s.host, s.port), storage])
        if not targets:
            return
        relay = NetRelay(Path(s.run_dir) / "netrelay.sock", targets)
        try:
            await relay.start()
        except OSError as e:
            log.warning("network relay unavailable (%s): `network: polyfn` functions will fail to start", e)
            return
        self.relay = self.sandbox.relay = relay
        self.specs.relay_urls = urls

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
