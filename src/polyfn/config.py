"""Every node-wide setting and its default, in one place.

Settings come from keyword arguments (the CLI), then `POLYFN_*` environment variables, then these defaults.
Validation errors name the key, the value and the allowed range (pydantic does the naming).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir(env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """`$POLYFN_DATA_DIR`, else `~/.local/share/polyfn` (XDG style)."""
    env = os.environ if env is None else env
    if env.get("POLYFN_DATA_DIR"):
        return Path(env["POLYFN_DATA_DIR"]).expanduser()
    return Path.home() / ".local" / "share" / "polyfn"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLYFN_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # default: SQLite file in the data dir

    # Function limits: defaults and node-wide maxima.
    default_timeout: float = Field(60.0, gt=0)
    max_timeout: float = Field(24 * 3600.0, gt=0)  # long jobs are a feature: no 5-minute cap
    default_memory: int = Field(256, ge=32)
    max_memory: int = Field(16384, ge=32)
    max_instances: int = Field(100, ge=1)  # per function
    max_payload: int = Field(6 * 1024 * 1024, ge=1024)  # bytes, request and response
    max_code_size: int = Field(250 * 1024 * 1024, ge=1024)  # uncompressed bytes of one revision
    max_code_files: int = Field(20000, ge=1)
    max_queue: int = Field(1000, ge=0)  # invocations waiting for an instance, per function
    keepalive: float = Field(600.0, ge=0)  # idle instance kept this long (seconds)
    init_timeout: float = Field(30.0, gt=0)  # instance start → ready, bounded further by the function timeout
    drain_timeout: float = Field(30.0, ge=0)  # graceful shutdown: in-flight invocations get this long

    # Activation store.
    activation_retention_count: int = Field(100_000, ge=100)
    activation_retention_age: float = Field(7 * 24 * 3600.0, gt=0)
    result_truncate: int = Field(4096, ge=0)  # bytes of the result kept in the activation record
    log_line_max: int = Field(16384, ge=80)  # longer lines are truncated with a marker
    log_lines_per_activation: int = Field(1000, ge=1)

    # Async invocations and triggers (docs/triggers.md).
    async_max_inflight: int = Field(256, ge=1)  # async invocations running at once on this node
    callback_attempts: int = Field(5, ge=1)  # POSTs of a result to an X-Callback-Url before it is marked failed
    callback_backoff: float = Field(1.0, ge=0)  # seconds before the first callback retry (doubles, jittered)
    callback_timeout: float = Field(10.0, gt=0)  # seconds per callback POST
    trigger_reconnect_max: float = Field(30.0, gt=0)  # cap on a broker trigger's reconnect backoff (seconds)

    # Process isolation.
    cgroups: bool = True  # use the cgroup memory controller when available

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'polyfn.db'}"

    @property
    def code_dir(self) -> Path:
        return self.data_dir / "code"

    @property
    def deps_dir(self) -> Path:
        return self.data_dir / "deps"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"
