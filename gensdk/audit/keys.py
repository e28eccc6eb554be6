"""Ed25519 keys that sign audit checkpoints.

The private key is a PEM (PKCS8, unencrypted) file readable only by its owner; anyone who can read it can
forge checkpoints, so a key file open to group or others is refused rather than used. `cryptography` is
imported inside the functions, so `import gensdk.audit` stays light.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Any

from gensdk._canonical import sha256_hex
from gensdk.errors import AuditError

__all__ = [
    "create_private_key",
    "key_id_of",
    "load_private_key",
    "load_public_key_file",
    "public_key_pem",
    "public_raw",
    "sign",
    "signature_is_valid",
    "signing_key_for",
]

# Filesystems without hard links (some network and FUSE mounts) fall back to a direct exclusive create.
_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def key_id_of(public_raw_bytes: bytes) -> str:
    """A short, stable name for a key: the first 16 hex digits of sha256 of the raw public key."""
    return sha256_hex(public_raw_bytes)[:16]


def public_raw(private_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_private_key(path: Path) -> Any:
    """Load an Ed25519 private key, refusing a file that group or others may access."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _refuse_open_permissions(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuditError(f"cannot read the audit signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"the audit signing key {path} is not an Ed25519 private key")
    return key


def create_private_key(path: Path) -> Any:
    """Create a new key at `path` with mode 0o600 from the first byte on; never overwrite an existing one.

    The key is written to a private temporary file and hard-linked into place, so a concurrent reader sees
    either no key or a complete one. If another process created the key first, that key is returned.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _link_into_place(path, pem):
            return load_private_key(path)  # another process created it first
    except OSError as exc:
        raise AuditError(f"cannot create the audit signing key {path}: {exc}") from exc
    return key


def signing_key_for(key_path: Path, trail_key: bytes | None, *, trail: object) -> Any:
    """The private key that signs `trail`, whose stored public key is `trail_key` (None: not signed yet).

    Created at `key_path` only for a trail that has never been signed: a fresh key for a signed trail would
    silently start a second, unrelated signing history, so a missing or different key is an error instead.
    """
    if not key_path.exists():
        if trail_key is not None:
            raise AuditError(
                f"the audit trail {trail} is signed by key {key_id_of(trail_key)}, but its private key "
                f"{key_path} is missing; restore the key file or pass key_path"
            )
        return create_private_key(key_path)
    key = load_private_key(key_path)
    raw = public_raw(key)
    if trail_key is not None and trail_key != raw:
        raise AuditError(
            f"the signing key {key_path} (key id {key_id_of(raw)}) is not the key the audit trail {trail} "
            f"was signed with (key id {key_id_of(trail_key)}); restore the right key file"
        )
    return key


def public_key_pem(public_raw_bytes: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM form, as `gensdk audit key export` writes it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(public_raw_bytes)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key_file(path: Path) -> bytes:
    """Read a PEM public key file and return its raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise AuditError(f"cannot read the public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"the public key {path} is not an Ed25519 key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(private_key: Any, message: bytes) -> str:
    return private_key.sign(message).hex()


def signature_is_valid(public_raw_bytes: bytes, message: bytes, signature_hex: str) -> bool:
    """True only for a well-formed signature that verifies; garbage in the table is simply invalid."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw_bytes).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _refuse_open_permissions(path: Path) -> None:
    if os.name == "nt":  # POSIX modes mean nothing there; NTFS ACLs are the user's business
        return
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise AuditError(f"cannot read the audit signing key {path}: {exc}") from exc
    if mode & 0o077:
        raise AuditError(
            f"the audit signing key {path} is accessible by group or others (mode {mode:o}); "
            f"anyone who can read it can forge checkpoints. Run: chmod 600 {path}"
        )


def _link_into_place(path: Path, pem: bytes) -> bool:
    """Publish `pem` at `path` atomically; False when a key is already there."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    _write_exclusive(tmp, pem)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        try:
            _write_exclusive(path, pem)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _write_exclusive(path: Path, data: bytes) -> None:
    """Create `path` (failing if it exists) with mode 0o600 set by open(2) itself, not by a later chmod."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
