"""Watermark keys: where they come from, how they are named, how each modality gets its own.

A key is at least 16 random bytes, given as hex in the configuration (`key = "..."`, held as a pydantic
`SecretStr` so it never appears in `describe()` or the audit trail) or read from a key file (hex text, or raw
bytes). Key files must be readable by their owner only: anyone who can read the key can forge the watermark
or find where to scrub it. `gensdk watermark keygen FILE` writes a new one.

What the audit trail records is the **key id**: the first 16 hex digits of
``sha256("gensdk-watermark-key-id" || key)``. From a 128-bit random key it reveals nothing useful.

Each scheme derives its own sub-key with HMAC-SHA256 (`WatermarkKey.derive`), so the text, image and table
marks made with one master key are independent of each other.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gensdk.errors import ConfigError

__all__ = ["MIN_KEY_BYTES", "WatermarkKey", "create_key_file", "require", "resolve_key"]

# 128 bits: the key id (a hash of the key) must not let anyone recover the key by trying candidates.
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class WatermarkKey:
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise ConfigError(f"a watermark key needs at least {MIN_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} hex digits), got {len(self.secret)}")

    @classmethod
    def from_hex(cls, text: str, source: str = "the configured key") -> WatermarkKey:
        cleaned = "".join(text.split())
        try:
            return cls(bytes.fromhex(cleaned))
        except ValueError:
            raise ConfigError(f"{source} is not a hex string") from None

    @classmethod
    def from_file(cls, path: str | Path) -> WatermarkKey:
        """Read a key file (hex text or raw bytes), refusing one that group or others may read."""
        path = Path(path)
        try:
            mode = path.stat().st_mode & 0o777
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"watermark key file {path} does not exist (create one with: gensdk watermark keygen {path})") from None
        except OSError as exc:
            raise ConfigError(f"cannot read watermark key file {path}: {exc.strerror or exc}") from None
        if os.name != "nt" and mode & 0o077:
            raise ConfigError(f"watermark key file {path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}")
        try:
            text = data.decode("ascii").strip()
            if text and all(c in "0123456789abcdefABCDEF \n\r\t" for c in text):
                return cls.from_hex(text, f"watermark key file {path}")
        except UnicodeDecodeError:
            pass
        return cls(data)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"gensdk-watermark-key-id" + self.secret).hexdigest()[:16]

    def derive(self, purpose: str) -> bytes:
        """A 32-byte sub-key for one scheme, e.g. derive("text/kgw/v1")."""
        return hmac.new(self.secret, f"gensdk-watermark/{purpose}".encode(), hashlib.sha256).digest()

    def derive_int(self, purpose: str, bits: int = 63) -> int:
        """A non-negative integer of `bits` bits derived for `purpose` (seeds, hash keys)."""
        return int.from_bytes(self.derive(purpose)[:8], "big") >> (64 - bits)


def resolve_key(key: Any = None, key_file: str | Path | None = None, *, what: str = "watermark policy") -> WatermarkKey:
    """The key from exactly one of `key` (hex str or pydantic SecretStr) and `key_file`."""
    if key is not None and key_file is not None:
        raise ConfigError(f"{what}: give either 'key' or 'key_file', not both")
    if key_file is not None:
        return WatermarkKey.from_file(key_file)
    if key is None:
        raise ConfigError(f"{what} needs a key: set 'key_file' (see `gensdk watermark keygen`) or 'key' (hex)")
    raw = key.get_secret_value() if hasattr(key, "get_secret_value") else key
    if isinstance(raw, WatermarkKey):
        return raw
    if isinstance(raw, bytes):
        return WatermarkKey(raw)
    return WatermarkKey.from_hex(str(raw), f"{what}: 'key'")


def require(*modules: str, purpose: str) -> None:
    """Refuse to start a policy whose heavy dependency is missing, naming the extra that brings it."""
    import importlib.util

    from gensdk.errors import MissingDependencyError

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(module, "watermark", purpose)


def create_key_file(path: str | Path) -> WatermarkKey:
    """Write a new random 32-byte key as hex, mode 0o600 from creation; never overwrite a file."""
    path = Path(path)
    key = WatermarkKey(secrets.token_bytes(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; a watermark key is never overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot create watermark key file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.secret.hex() + "\n")
    return key
