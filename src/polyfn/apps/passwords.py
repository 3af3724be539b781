"""Password hashes: scrypt (the standard library's, from OpenSSL), memory-hard, with a per-password salt.

Stored as `scrypt$N$r$p$salt$hash` (base64), so the cost can be raised later: `needs_rehash` tells the
caller to store a new hash after a successful sign-in. N=2^15, r=8 takes 32 MiB and ~50-100 ms per check
here: slow for a guesser, bearable for a person. Hashing runs in a thread (the caller's job): it must never
stall the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 2**15, 8, 1
MAXMEM = 64 * 1024 * 1024
MIN_LENGTH, MAX_LENGTH = 8, 1024


class WeakPassword(ValueError):
    pass


def check_strength(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_LENGTH} characters")


def hash_password(password: str, n: int = N, r: int = R, p: int = P) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches `stored`. With `stored` None (no such user) the same work is done
    against a fixed hash, so the answer's timing does not tell which accounts exist."""
    dummy = stored is None
    if stored is None:
        stored = _dummy()
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=MAXMEM, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want) and not dummy


def needs_rehash(stored: str) -> bool:
    return not stored.startswith(f"scrypt${N}${R}${P}$")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


_DUMMY: list[str] = []


def _dummy() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password("polyfn: no such user"))
    return _DUMMY[0]
