"""What the console keeps in memory: its sessions (token → expiry and namespace) and the full bodies of recent
invocations (for "download full")."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from polyfn.tenancy import DEFAULT


class Sessions:
    """Console sessions: token → expiry (monotonic seconds) and namespace (None: an administrator's, who picks
    one: `chosen`). The clock is passed in for tests."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_sessions: int = 1000):
        self.ttl = ttl
        self.clock = clock
        self.max_sessions = max_sessions
        self._expiry: dict[str, float] = {}
        self.namespace: dict[str, str | None] = {}  # token → the namespace it is confined to (None: any)
        self.chosen: dict[str, str] = {}  # token → the namespace an administrator's session works in

    def create(self, namespace: str | None = None) -> str:
        now = self.clock()
        if len(self._expiry) >= self.max_sessions:
            self._expiry = {t: e for t, e in self._expiry.items() if e > now}
            while len(self._expiry) >= self.max_sessions:  # still full: the oldest goes
                self._expiry.pop(next(iter(self._expiry)))
            self.namespace = {t: n for t, n in self.namespace.items() if t in self._expiry}
            self.chosen = {t: n for t, n in self.chosen.items() if t in self._expiry}
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self.ttl
        self.namespace[token] = namespace
        return token

    def working(self, token: str) -> tuple[str, bool]:
        """(the namespace a valid session works in, whether it may pick another)."""
        confined = self.namespace.get(token)
        if confined is not None:
            return confined, False
        return self.chosen.get(token, DEFAULT), True

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        exp = self._expiry.get(token)
        if exp is None:
            return False
        if exp <= self.clock():
            self._expiry.pop(token, None)
            return False
        return True

    def end(self, token: str | None) -> None:
        if token:
            self._expiry.pop(token, None)
            self.namespace.pop(token, None)
            self.chosen.pop(token, None)


class ResultCache:
    """Full bodies of recent console invocations (bounded by total bytes), for "download full"."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0

    def put(self, key: str, body: bytes, content_type: str) -> None:
        if len(body) > self.max_bytes:
            return
        self._items[key] = (body, content_type)
        self._size += len(body)
        while self._size > self.max_bytes:
            _, (old, _ct) = self._items.popitem(last=False)
            self._size -= len(old)

    def get(self, key: str) -> tuple[bytes, str] | None:
        return self._items.get(key)
