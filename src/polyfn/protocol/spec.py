"""What an instance starts from: `InstanceSpec`, sent by the server (instances/specs.py makes it) through the zygote
to the child (runtimes/python/startup.py applies it), and the environment variables an instance keeps of its
parent's (`SAFE_ENV`). Both sides import them from here, so the server never imports in-sandbox code for them."""

from __future__ import annotations

from typing import Any

import msgspec

SAFE_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "PYTHONHASHSEED",
            "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


class InstanceSpec(msgspec.Struct, kw_only=True, array_like=True):
    """Everything the child needs to start; sent by the server through the zygote."""

    instance_id: str
    function: str
    revision: int
    flavor: str
    handler: str
    code_dir: str
    deps_dir: str = ""
    concurrency: int = 1
    memory_mb: int = 256
    timeout: float = 60.0
    env: dict[str, str] = {}
    sandbox: Any = None  # polyfn.sandbox.SandboxPlan, array-encoded
    namespaces: list[str] = []  # namespaces the instance must be in, or it refuses to start (fail closed)
    log_line_max: int = 16384
    log_lines_max: int = 1000
    zygote: bool = False  # become the revision's function zygote (runtimes/python/fnzygote.py), not an instance
    log_bytes_max: int = 1 << 62  # characters of lines kept per invocation (the server bounds bytes again)
    #: the import path after the function's own code and dependencies: the standard library and the
    #: runtime's provided packages (sandbox/rootfs.py); empty keeps the zygote's (tests of the instance alone)
    sys_path: list[str] = []
