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
