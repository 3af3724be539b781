"""Secrets encrypted at rest with the node key (`<data dir>/node.key`, 0600, made at first use).

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`): the database alone reveals nothing; the node key
and the database together do, so keep them apart in backups. Values are decrypted only to start an
instance that asked for them, never returned by the API and never logged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from polyfn import tenancy

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
MAX_SECRET = 64 * 1024


class SecretsUnavailable(RuntimeError):
    pass


class SecretBox:
    def __init__(self, key_path: Path):
        self.key_path = key_path
        self._fernet: Any = None

    def _box(self) -> Any:
        if self._fernet is None:
            try:
                from cryptography.fernet import Fernet
            except ImportError:
                raise SecretsUnavailable("secrets need the 'cryptography' package: pip install cryptography") from None
            if self.key_path.exists():
                key = self.key_path.read_bytes().strip()
            else:
                key = Fernet.generate_key()
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(key + b"\n")
            self._fernet = Fernet(key)
        return self._fernet

    def encrypt(self, value: str) -> str:
        return self._box().encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._box().decrypt(token.encode()).decode()

    def derive(self, purpose: bytes, length: int = 32) -> bytes:
        """A key for one purpose (e.g. signing app users' tokens), derived from the node key with HKDF-SHA256:
        every node holding the same node key derives the same key, and no derived key reveals another."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        self._box()  # made at first use, like the encryption key
        material = self.key_path.read_bytes().strip()
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"polyfn node key", info=purpose).derive(material)


class SecretError(ValueError):
    """A secret refused: `status`, a stable `code` and a message naming what to change."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class SecretValues:
    """Setting and deleting function secrets, for every API that does (polyfn's `/v1/secrets`, OpenFaaS's
    `/system/secrets`): the name and size checked, the value encrypted with the node key, stored, and instances
    that use the secret told (`changed`), so new ones start with the new value; and reading them for a start."""

    def __init__(self, store: Any, box: SecretBox, changed: Any, clock: Any = None):
        import time

        self.store = store  # services.Secrets
        self.box = box
        self.changed = changed  # name → None (scheduler: instances holding the old value are replaced)
        self.clock = clock or time.time

    async def put(self, name: str, value: str, namespace: str = tenancy.DEFAULT) -> bool:
        """True when the secret is new. A secret `NAME` of a namespace other than `default` is held as
        `NS~NAME`, like a function (tenancy.py): only that namespace's functions and keys see it."""
        if not NAME_RE.match(name):
            raise SecretError(400, "invalid_name", f"invalid secret name {name!r}: letters, digits, '_', '.', '-'")
        if len(value.encode()) > MAX_SECRET:
            raise SecretError(413, "payload_too_large", f"a secret holds at most {MAX_SECRET} bytes")
        try:
            token = self.box.encrypt(value)
        except SecretsUnavailable as e:
            raise SecretError(501, "secrets_unavailable", str(e)) from None
        held = tenancy.qualify(namespace, name)
        created = bool(await self.store.put_secret(held, token, self.clock()))
        self.changed(held)
        return created

    async def read(self, names: list[str]) -> dict[str, str]:
        """Decrypted values of the held `names` (all must exist: KeyError naming the missing), for an instance
        being started."""
        found = await self.store.get_secrets(names)
        missing = [n for n in names if n not in found]
        if missing:
            raise KeyError(", ".join(missing))
        return {n: self.box.decrypt(v) for n, v in found.items()}

    async def delete(self, name: str, namespace: str = tenancy.DEFAULT) -> bool:
        if not NAME_RE.match(name):  # (a held name `NS~NAME` is never addressed directly)
            return False
        held = tenancy.qualify(namespace, name)
        if not await self.store.delete_secret(held):
            return False
        self.changed(held)
        return True

    async def list(self, namespace: str = tenancy.DEFAULT) -> list[dict[str, Any]]:
        """The namespace's secrets (never their values), by local name."""
        return [{**r, "name": tenancy.local(r["name"])} for r in await self.store.list_secrets()
                if tenancy.owns(namespace, r["name"])]

    async def forget_namespace(self, namespace: str) -> dict[str, Any]:
        """A deleted namespace's secrets go with it."""
        gone = [r["name"] for r in await self.list(namespace)]
        for name in gone:
            await self.delete(name, namespace)
        return {"secrets": gone}
