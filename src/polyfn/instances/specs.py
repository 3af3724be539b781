"""What an instance of a revision is given at its start (`InstanceSpec`, runtimes/python/startup.py): its
environment (node-wide, the object store's hook, the function's own, its secrets; polyfn's endpoint URLs as
the relay shows them inside its network), its secrets as files or variables (each read in the function's own
namespace), its sandbox plan (sandboxing.py), and the log limits. Asked by the instance manager for every
start and for each function zygote."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from polyfn.config import Settings
from polyfn.instances.instance import InitFailed
from polyfn.instances.sandboxing import NodeSandbox
from polyfn.model import Revision
from polyfn.protocol.spec import InstanceSpec
from polyfn.sandbox.plan import SandboxPlan
from polyfn.tenancy import DEFAULT, account_id, local, namespace_of, qualify

SECRETS_DIR = "/run/secrets"
log = logging.getLogger("polyfn.manager")


#: the account id of the function's namespace, for the vendor contexts that show one (Lambda's ARN and events)
ACCOUNT_ENV = "POLYFN_ACCOUNT_ID"


class InstanceSpecs:
    def __init__(self, settings: Settings, sandbox: NodeSandbox):
        self.settings = settings
        self.sandbox = sandbox
        self.instance_env: dict[str, str] = {}  # node-wide environment for every instance (set before start)
        #: Extra environment for a function's instances (e.g. the object store's AWS_* credentials);
        #: the function's own `env` wins over it.
        self.env_hook: Callable[[str], Awaitable[dict[str, str]]] | None = None
        self.secret_source: Any = None  # async (names) -> {name: value}; set by the Node
        #: each polyfn endpoint's URL as the node announces it → the one inside an instance's network
        #: (`network: polyfn` and `egress`: sandbox/relay.py); set by the node before start
        self.relay_urls: dict[str, str] = {}

    async def build(self, rev: Revision, iid: str) -> tuple[InstanceSpec, SandboxPlan]:
        """The spec of instance `iid` of `rev`, and its sandbox plan (a copy: this start's secret files in it)."""
        spec = rev.spec
        secret_files, secret_env = await self._secrets_for(spec.secrets, namespace_of(rev.function))
        hook_env = await self.env_hook(rev.function) if self.env_hook else {}
        plan = self.sandbox.plan_for(rev)
        plan.secret_files = secret_files
        ispec = InstanceSpec(
            instance_id=iid,
            function=local(rev.function),  # (its local name: a namespace's function knows itself as `hello`)
            revision=rev.number,
            flavor=spec.flavor,
            handler=spec.handler,
            code_dir=rev.code_dir,
            deps_dir=rev.deps_dir or "",
            concurrency=spec.concurrency,
            memory_mb=spec.memory,
            timeout=spec.timeout,
            # (the account id its vendor's context shows, e.g. Lambda's ARN: the namespace's, tenancy.account_id)
            env=self.env_for(rev, {ACCOUNT_ENV: account_id(namespace_of(rev.function)), **hook_env, **spec.env,
                                   **secret_env}),
            sandbox=plan,
            namespaces=sorted(self.sandbox.namespaces),
            log_line_max=self.settings.log_line_max,
            log_lines_max=self.settings.log_lines_per_activation,
            log_bytes_max=self.settings.log_bytes_per_activation,
            sys_path=self.sandbox.py_sys_path,
        )
        return ispec, plan

    async def ahead(self, rev: Revision) -> None:
        """At deploy, before `rev` takes traffic: what its first start would otherwise make on its path — the
        function's own storage key (`env_hook`: made on first use, a database write) and the revision's sandbox
        plan (built once per revision: /etc, the allow-list). A failure here is left to that start."""
        try:
            if self.env_hook is not None:
                await self.env_hook(rev.function)
            self.sandbox.plan_for(rev)
        except Exception as e:  # the start makes them again and reports what fails
            log.warning("%s: could not prepare its first start at deploy: %s", rev.key, e)

    def env_for(self, rev: Revision, extra: dict[str, str]) -> dict[str, str]:
        """The environment of an instance of `rev`: node-wide, the hook's (object store), the function's
        own, then `extra` (secrets). With `network: polyfn`, polyfn's endpoint URLs are rewritten to the
        addresses its relay listens on inside the instance's network namespace."""
        env = {**self.instance_env, **extra}
        if self.sandbox.network_for(rev.spec) in ("polyfn", "egress"):
            for outside, inside in self.relay_urls.items():
                env = {k: v.replace(outside, inside) for k, v in env.items()}
        return env

    async def _secrets_for(self, entries: list[str], namespace: str = DEFAULT) -> tuple[dict[str, str], dict[str, str]]:
        """({name: value} for /run/secrets files, {name: value} for env) of a spec's `secrets`, each the
        secret of that name in the function's own namespace (held as NS~NAME: tenancy.py)."""
        if not entries:
            return {}, {}
        names = [e.partition(":")[0] for e in entries]
        try:
            held = await self.secret_source([qualify(namespace, n) for n in names]) if self.secret_source else {}
        except KeyError as e:
            missing = ", ".join(local(n) for n in str(e.args[0]).split(", "))
            raise InitFailed({"errorType": "Runtime.MissingSecret",
                              "errorMessage": f"secret(s) {missing} not found: set them with `polyfn secret set NAME`"},
                             []) from None
        values = {local(k): v for k, v in held.items()}
        files: dict[str, str] = {}
        env: dict[str, str] = {}
        for entry in entries:
            name, _, how = entry.partition(":")
            if how == "env":
                env[name] = values[name]
            else:
                if "mount" not in self.sandbox.namespaces or not os.path.isdir(SECRETS_DIR):
                    raise InitFailed({"errorType": "Runtime.SecretsUnavailable",
                                      "errorMessage": f"secret {name!r} as a file needs the mount namespace "
                                      f"(isolation here: {self.sandbox.isolation}); use '{name}:env' instead"}, [])
                files[name] = values[name]
        return files, env
