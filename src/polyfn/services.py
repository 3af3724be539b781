"""The narrow services the faces receive: the control API's routers, the vendor APIs, the console, authorisation.

Each face is handed, by the composition root (`node.py`), only the services it uses — as Starlette hands an app
its routes and Knative's autoscaler takes a metric client — never the node. This module declares them, as
protocols that name exactly what the faces call, so a face's signature says what it depends on and a test
can hand it a small fake. The implementations live below (the store, the registry, the recorder, the queue,
the key ring…); nothing here imports a face.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from polyfn.call import Call
    from polyfn.invoker import Outcome
    from polyfn.model import Activation, FunctionInfo, Revision
    from polyfn.store.security import KeyRecord


class FunctionStore(Protocol):
    """The metadata store as the faces read it (store/db.py): functions, revisions, activations, logs."""

    async def get_function(self, name: str) -> FunctionInfo | None: ...
    async def list_functions(self) -> list[FunctionInfo]: ...
    async def get_current_revision(self, name: str) -> Revision | None: ...
    async def get_revision(self, name: str, number: int) -> Revision | None: ...
    async def list_revisions(self, name: str) -> list[Revision]: ...
    async def get_activation(self, id: str) -> Activation | None: ...
    async def list_activations(self, function: str | None = None, status: str | None = None,
                               cold: bool | None = None, since: float | None = None, until: float | None = None,
                               limit: int = 50) -> list[Activation]: ...
    async def get_logs(self, function: str, since: float | None = None, activation: str | None = None,
                       limit: int = 200, grep: re.Pattern[str] | None = None) -> list[dict[str, Any]]: ...


class LiveFunctions(Protocol):
    """The functions this node serves now (scheduler/registry.py): their active revisions and pools."""

    functions: dict[str, Any]

    def get(self, name: str) -> Any: ...
    def all_of(self, name: str) -> list[Any]: ...
    def remove_revision(self, name: str, number: int) -> None: ...


class Activations(Protocol):
    """Activation records being written (observe/recorder.py): flush before a read; follow live ones."""

    async def flush(self) -> None: ...
    def record(self, act: Activation) -> None: ...
    def follow(self, function: str, callback: Callable[[Activation], None]) -> Callable[[], None]: ...


class UsageSums(Protocol):
    """Metered usage summed per namespace, function and hour (store/db.py; written by observe/usage.py)."""

    async def list_usage(self, since: float | None = None, until: float | None = None,
                         namespace: str | None = None, function: str | None = None) -> list[dict[str, Any]]: ...


class Invocations(Protocol):
    """Run one invocation (invoker.py)."""

    async def call(self, call: Call) -> Outcome: ...
    def cancel(self, activation_id: str) -> bool: ...


class Deploys(Protocol):
    """Deploy a function from its spec fields and files (deploy/service.py)."""

    async def deploy(self, fields: dict[str, Any], files: dict[str, bytes],
                     progress: Callable[[str], None] | None = None) -> tuple[FunctionInfo, bool, Any]: ...


class AsyncJobs(Protocol):
    """The durable async queue (queue/dispatcher.py): enqueue, look up, count; `db` is its queue file."""

    db: Any
    jobs: Any
    inflight: int

    async def enqueue(self, call: Call, callback_url: str | None = None, job_id: str | None = None,
                      check: bool = True) -> str: ...
    async def lookup(self, job_id: str) -> dict[str, Any] | None: ...
    async def cancel(self, job_id: str) -> bool: ...
    async def counts(self) -> dict[str, int]: ...
    async def backlog(self) -> tuple[dict[str, int], dict[str, int]]: ...
    def poke(self) -> None: ...


class Triggers(Protocol):
    """The node's trigger runners (triggers/manager.py)."""

    runners: dict[str, Any]

    def list(self, function: str | None = None) -> list[dict[str, Any]]: ...
    def view(self, runner: Any) -> dict[str, Any]: ...
    async def create(self, function: str, kind: str, config: Any, trigger_id: str | None = None) -> Any: ...
    async def delete(self, trigger_id: str) -> bool: ...
    def add_sink(self, prefix: str, fire: Callable[[str, str, Any], Awaitable[None]]) -> None: ...


class Keys(Protocol):
    """The node's one key store (auth/keys.py): API keys, storage keys, signing credentials."""

    def verify(self, token: str) -> KeyRecord | None: ...
    def from_authorization(self, authorization: str) -> KeyRecord | None: ...
    def signing_credentials(self, access_key_id: str) -> Any: ...
    async def create(self, scope: str, function: str | None = None, description: str = "") -> tuple[KeyRecord, str]: ...
    async def list(self) -> list[KeyRecord]: ...
    async def revoke(self, key_id: str) -> bool: ...
    async def forget_function(self, function: str) -> None: ...


class RateLimits(Protocol):
    """Token buckets (auth/ratelimit.py): seconds to wait, 0 when the call may go."""

    def check(self, key: str, rate: float, burst: float, now: float) -> int: ...


class Secrets(Protocol):
    """Function secrets at rest (store/security.py), values encrypted with the node key."""

    async def put_secret(self, name: str, value: str, now: float) -> bool: ...
    async def list_secrets(self) -> list[dict[str, Any]]: ...
    async def delete_secret(self, name: str) -> bool: ...


class Instances(Protocol):
    """What the API shows and changes of instance management (scheduler/manager.py)."""

    fzs: Any
    memory_budget_mb: int | None

    def reserved_mb(self) -> int: ...
    def secret_changed(self, name: str) -> None: ...


#: delete a function for every API: forget it, drain its pool, remove its code later, drop what points at it
#: (storage notifications, triggers, its queued jobs). False when it does not exist. Made by the root.
DeleteFunction = Callable[[str], Awaitable[bool]]


class CompatEntities(Protocol):
    """The vendor faces' own objects as JSON documents by (kind, name) (store/compat.py): OpenWhisk's packages,
    triggers and rules, OpenFaaS's image references."""

    async def get(self, kind: str, name: str) -> dict[str, Any] | None: ...
    async def list(self, kind: str) -> list[dict[str, Any]]: ...
    async def put(self, kind: str, name: str, doc: dict[str, Any], now: float, create: bool) -> bool: ...
    async def delete(self, kind: str, name: str) -> bool: ...
