"""Tamper-evident audit trail: every released output leaves a hash-chained, committed record.

    with open_audit_sink("sqlite:///var/lib/gensdk/audit.db") as sink:
        receipt = sink.append({"record_id": "r-1", "kind": "generation", ...})
        report = sink.verify()

Importing this package does not import `cryptography`; the key functions import it when they sign or verify.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from gensdk.audit.base import AuditReceipt, AuditSink, VerifyReport
from gensdk.audit.sqlite import SQLiteAuditSink
from gensdk.errors import ConfigError

__all__ = [
    "AuditReceipt",
    "AuditSink",
    "SQLiteAuditSink",
    "VerifyReport",
    "default_audit_path",
    "open_audit_sink",
]

AUDIT_ENV = "GENSDK_AUDIT"
POSTGRES_SCHEMES = ("postgresql", "postgres")  # gensdk.audit.postgres, imported only when a URL names it


def default_audit_path() -> Path:
    """Where the audit trail lives when nothing else is configured: the user's gensdk data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("gensdk", appauthor=False)) / "audit.db"


def open_audit_sink(
    target: str | os.PathLike[str] | None = None,
    *,
    sinks: Mapping[str, type[AuditSink]] | None = None,
    **options: Any,
) -> AuditSink:
    """Open the audit sink a target names; `options` go to the sink's constructor.

    `target` is a URL ("sqlite:///abs/path.db", "postgresql://...") or a plain path (SQLite). None means the
    environment variable GENSDK_AUDIT, else `default_audit_path()`. `sinks` maps URL schemes to sink classes
    (the plugin registry passes the sinks plugins registered); it takes precedence over the built-in SQLite
    sink. Every sink class is constructed as `cls(target, **options)` with the target as given.
    """
    if target is None:
        target = os.environ.get(AUDIT_ENV) or default_audit_path()
    scheme = _scheme_of(target)
    if sinks and scheme in sinks:
        return sinks[scheme](target, **options)
    if scheme == SQLiteAuditSink.scheme:
        return SQLiteAuditSink(target, **options)
    if scheme in POSTGRES_SCHEMES:  # built in, so that `gensdk audit verify` reaches it without a plugin host
        from gensdk.audit.postgres import PostgresAuditSink

        return PostgresAuditSink(os.fspath(target), **options)
    known = sorted({SQLiteAuditSink.scheme, POSTGRES_SCHEMES[0], *(sinks or {})})
    # Only the scheme is named: the rest of a URL may hold a password.
    raise ConfigError(
        f"no audit sink for the URL scheme {scheme!r} (known: {', '.join(known)}); "
        "other sinks are added by plugins through register_audit_sinks"
    )


def _scheme_of(target: str | os.PathLike[str]) -> str:
    text = os.fspath(target)
    if "://" not in text:
        return SQLiteAuditSink.scheme  # a plain path, including Windows "C:\\..."
    return text.split("://", 1)[0].lower()
