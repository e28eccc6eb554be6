"""API keys: made here, stored only as hashes, checked in constant work per request; per-key rate limits.

Why plain SHA-256 and not a slow or keyed hash. gensdk makes the keys itself (`new_key`): 32 random bytes,
256 bits. Nobody can invert SHA-256 or search a 2^256 space, so a slow hash (scrypt, argon2) would add
nothing but CPU on every request: tens of milliseconds per call, which on a small machine is itself a
denial-of-service lever, since hashing runs before the rate limit knows who is calling. A keyed hash (HMAC with
a server pepper) protects only low-entropy secrets, and needs a second secret kept apart from the file. A key
that is not of gensdk's own form (`gsk_` + 43 characters) is refused without a lookup, so a key someone made
up by hand, the one case a slow hash would help, never authenticates.

The configuration holds `sha256:<hex>`; the key itself never touches disk on the server, the logs or the
audit trail (the key's *name* does).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

from gensdk.server.config import ApiKeyConfig

__all__ = ["KEY_PREFIX", "KeyRing", "Principal", "RateLimiter", "hash_key", "new_key"]

KEY_PREFIX = "gsk_"
# "gsk_" + 43 characters of URL-safe base64: 32 random bytes.
_KEY = re.compile(r"gsk_[A-Za-z0-9_-]{43}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and scopes (never the key)."""

    name: str
    scopes: frozenset[str]


class KeyRing:
    """Looks a presented key up by its hash. The lookup's timing depends on the hash, never on the key."""

    def __init__(self, keys: list[ApiKeyConfig]):
        self._by_hash = {k.hash: Principal(k.name, frozenset(k.scopes)) for k in keys}
        self.limits = {k.name: RateLimiter(k.rate_per_minute / 60.0, k.burst) for k in keys}

    def identify(self, presented: str) -> Principal | None:
        if not _KEY.fullmatch(presented):
            return None
        return self._by_hash.get(hash_key(presented))


class RateLimiter:
    """A token bucket: `burst` requests at once, refilled at `rate` per second. Thread-safe."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, float(burst)
        self._tokens, self._stamp = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate
