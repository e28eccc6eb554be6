"""The default audit sink: one SQLite file in WAL mode, hash-chained records, signed checkpoints.

Durability (`synchronous`):
- "NORMAL" (default): a committed record survives a crash of the process; after a power loss or OS crash the
  last few commits may be rolled back (the chain stays valid, it is just shorter).
- "FULL": the WAL is fsynced at every commit, so a record that `append` returned also survives power loss.

Concurrency: one connection per sink, guarded by a lock, serves any number of threads. Several processes may
each open their own sink on the same file; `BEGIN IMMEDIATE` makes them take turns, waiting up to
`busy_timeout` seconds before `AuditLockedError`. Do not share a sink across `fork()`.

Records and checkpoints are append-only: triggers abort any UPDATE or DELETE. Someone with write access to the
file can drop the triggers; that is what `verify()` is for.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from gensdk.audit import keys
from gensdk.audit.base import (
    DEFAULT_CHECKPOINT_EVERY,
    GENESIS_HASH,
    AuditReceipt,
    AuditSink,
    VerifyReport,
    chain_hash,
    checked_body,
    checked_checkpoint_every,
    encode_body,
    record_dict,
    retry_receipt,
)
from gensdk.audit.verify import Checkpoint, checkpoint_message, repeated_record_ids, trusted_key, verify_chain
from gensdk.errors import AuditCorruptError, AuditError, AuditLockedError, ConfigError

__all__ = ["SCHEMA_VERSION", "SQLiteAuditSink", "sqlite_path"]

SCHEMA_VERSION = "1"
_COLUMNS = {
    "records": ["seq", "record_id", "prev_hash", "hash", "body"],
    "checkpoints": ["seq", "hash", "key_id", "signature"],
    "meta": ["key", "value"],
}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records(seq INTEGER PRIMARY KEY, record_id TEXT UNIQUE NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, key_id TEXT NOT NULL,
    signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'audit {table} are append-only'); END;\n"
    for table in ("records", "checkpoints")
    for op in ("UPDATE", "DELETE")
)
_PAGE = 500
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


def sqlite_path(location: str | os.PathLike[str]) -> Path:
    """The file behind "sqlite:///abs/path" or a plain path (everything after "sqlite://" is the path)."""
    text = os.fspath(location)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
    if not text or text == ":memory:":
        raise ConfigError(f"the audit trail needs a file path, got {os.fspath(location)!r}")
    return Path(text).expanduser().absolute()


class SQLiteAuditSink(AuditSink):
    """Hash-chained audit records in one SQLite file; see the module docstring for durability and locking."""

    scheme = "sqlite"

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        checkpoint_every: int | None = None,
        key_path: str | os.PathLike[str] | None = None,
        create: bool = True,
    ):
        self.path = sqlite_path(location)
        self.key_path = Path(key_path).expanduser() if key_path else self.path.with_name(self.path.name + ".key")
        self.synchronous = _checked_synchronous(synchronous)
        self.busy_timeout = float(busy_timeout)
        self._pinned_every = None if checkpoint_every is None else checked_checkpoint_every(checkpoint_every)
        self.checkpoint_every = self._pinned_every or DEFAULT_CHECKPOINT_EVERY  # replaced by the trail's own
        self._lock = threading.Lock()
        self._signing_key: Any = None
        self._key_id: str | None = None
        self._conn: sqlite3.Connection | None = self._open(create)

    # --- writing -------------------------------------------------------------------------------------------

    def append(self, body: dict) -> AuditReceipt:
        record_id = checked_body(body)
        with self._transaction() as conn:
            stored = conn.execute("SELECT seq, hash, body FROM records WHERE record_id = ?", (record_id,)).fetchone()
            if stored is not None:
                return retry_receipt(record_id, stored, body)
            last_seq, prev_hash = _head_row(conn) or (0, GENESIS_HASH)
            seq = last_seq + 1
            body_json = encode_body({**body, "seq": seq}, record_id)
            record_hash = chain_hash(prev_hash, body_json)
            conn.execute(
                "INSERT INTO records(seq, record_id, prev_hash, hash, body) VALUES (?, ?, ?, ?, ?)",
                (seq, record_id, prev_hash, record_hash, body_json.decode()),
            )
            if seq % self.checkpoint_every == 0:
                self._write_checkpoint(conn, seq, record_hash)
        return AuditReceipt(record_id=record_id, seq=seq, hash=record_hash)

    def checkpoint(self) -> int | None:
        """Sign the current head now (e.g. before handing the trail over); its seq, or None for an empty trail."""
        with self._transaction() as conn:
            head = _head_row(conn)
            if head is None:
                return None
            seq, record_hash = head
            if conn.execute("SELECT 1 FROM checkpoints WHERE seq = ?", (seq,)).fetchone() is None:
                self._write_checkpoint(conn, seq, record_hash)
        return seq

    def public_key(self) -> tuple[bytes, str]:
        """The raw public key that signs this trail and where it came from ("private-key-file" or "meta").

        Creates the signing key if the trail has none yet, so the key can be pinned before the first
        checkpoint. Falls back to the key stored in the database only when the private key file is absent.
        """
        with self._transaction() as conn:
            meta_raw = _meta_public_key(conn)
            if meta_raw is not None and not self.key_path.exists():
                return meta_raw, "meta"
            key, _ = self._signer(conn)
        return keys.public_raw(key), "private-key-file"

    # --- reading -------------------------------------------------------------------------------------------

    def verify(
        self,
        public_key_path: str | None = None,
        *,
        expect_head: str | None = None,
        checkpoint_every: int | None = None,
    ) -> VerifyReport:
        self._connection()  # a closed sink says so, rather than verifying anyway
        pinned_every = self._pinned_every if checkpoint_every is None else checked_checkpoint_every(checkpoint_every)
        with _translate_errors(self.path), closing(self._reader()) as conn:
            conn.execute("BEGIN")  # one snapshot: records appended by others meanwhile are not half-seen
            meta_raw = _meta_public_key(conn)
            stored_every = _stored_checkpoint_every(conn)
            checkpoints = {
                row[0]: Checkpoint(*row) for row in conn.execute("SELECT seq, hash, key_id, signature FROM checkpoints")
            }
            report = verify_chain(
                conn.execute("SELECT seq, record_id, prev_hash, hash, body FROM records ORDER BY seq"),
                checkpoints,
                trusted=trusted_key(public_key_path, self.key_path, meta_raw),
                checkpoint_every=pinned_every or stored_every or DEFAULT_CHECKPOINT_EVERY,
                stored_checkpoint_every=stored_every,
                meta_key=meta_raw,
                duplicates=_duplicates(conn),
                expect_head=expect_head,
            )
            conn.execute("COMMIT")
        return report

    def records(self, start: int = 1, limit: int | None = None) -> Iterator[dict]:
        # Paged, so the lock is never held while the caller works on a record (it may append meanwhile).
        remaining = limit
        next_seq = start
        while remaining is None or remaining > 0:
            page = self._page(next_seq, _PAGE if remaining is None else min(_PAGE, remaining))
            if not page:
                return
            yield from (record_dict(row) for row in page)
            next_seq = page[-1][0] + 1
            if remaining is not None:
                remaining -= len(page)

    def lookup(self, record_id: str) -> dict | None:
        with self._lock, _translate_errors(self.path):
            row = self._connection().execute(
                "SELECT seq, record_id, prev_hash, hash, body FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
        return record_dict(row) if row else None

    def head(self) -> AuditReceipt | None:
        with self._lock, _translate_errors(self.path):
            row = self._connection().execute(
                "SELECT record_id, seq, hash FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return AuditReceipt(*row) if row else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteAuditSink({str(self.path)!r})"

    # --- internals -----------------------------------------------------------------------------------------

    def _open(self, create: bool) -> sqlite3.Connection:
        if not create and not self.path.exists():
            raise AuditError(f"there is no audit trail at {self.path}")
        with _translate_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                self._prepare(conn, create)
            except BaseException:
                conn.close()
                raise
        return conn

    def _prepare(self, conn: sqlite3.Connection, create: bool) -> None:
        # Look before converting anything: someone else's database must not be switched to WAL by us.
        if create and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            conn.execute("PRAGMA journal_mode=WAL")
            every = f"INSERT OR IGNORE INTO meta(key, value) VALUES ('checkpoint_every', '{self.checkpoint_every}');"
            conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}{every}COMMIT;")
        _check_schema(conn, self.path)
        self.checkpoint_every = self._trail_checkpoint_every(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def _trail_checkpoint_every(self, conn: sqlite3.Connection) -> int:
        """The interval fixed when the trail was created; every writer must use it, or verify would fail."""
        stored = _stored_checkpoint_every(conn)
        if stored is None:
            raise AuditCorruptError(f"{self.path}: the audit trail's checkpoint interval is missing or unreadable")
        if self._pinned_every is not None and self._pinned_every != stored:
            raise ConfigError(
                f"the audit trail {self.path} was created with checkpoint_every={stored}, "
                f"but checkpoint_every={self._pinned_every} was configured; a trail keeps one interval"
            )
        return stored

    def _reader(self) -> sqlite3.Connection:
        # Verification gets its own connection so that a long walk never blocks this sink's appends.
        return sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AuditError(f"the audit sink for {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _translate_errors(self.path):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _page(self, start: int, size: int) -> list[tuple]:
        with self._lock, _translate_errors(self.path):
            return self._connection().execute(
                "SELECT seq, record_id, prev_hash, hash, body FROM records WHERE seq >= ? ORDER BY seq LIMIT ?",
                (start, size),
            ).fetchall()

    def _write_checkpoint(self, conn: sqlite3.Connection, seq: int, record_hash: str) -> None:
        key, key_id = self._signer(conn)
        signature = keys.sign(key, checkpoint_message(seq, record_hash))
        conn.execute(
            "INSERT INTO checkpoints(seq, hash, key_id, signature) VALUES (?, ?, ?, ?)",
            (seq, record_hash, key_id, signature),
        )

    def _signer(self, conn: sqlite3.Connection) -> tuple[Any, str]:
        """The signing key, loaded (or created) once; also records its public half in meta."""
        meta_raw = _meta_public_key(conn)
        if self._signing_key is None:
            self._signing_key = keys.signing_key_for(self.key_path, meta_raw, trail=self.path)
            self._key_id = keys.key_id_of(keys.public_raw(self._signing_key))
        if meta_raw is None:
            raw_hex = keys.public_raw(self._signing_key).hex()
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('public_key', ?)", (raw_hex,))
        return self._signing_key, self._key_id  # type: ignore[return-value]


def _checked_synchronous(value: str) -> str:
    mode = str(value).upper()
    if mode not in ("NORMAL", "FULL"):
        raise ConfigError(f"audit synchronous must be 'NORMAL' or 'FULL', got {value!r}")
    return mode


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [table for table in _COLUMNS if table not in tables]
    if missing:
        raise AuditCorruptError(
            f"{path} is an SQLite database but not a gensdk audit trail (no {', '.join(missing)} table)"
        )
    for table, expected in _COLUMNS.items():
        found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        if found != expected:
            raise AuditCorruptError(f"{path}: audit table {table} has columns {found}, expected {expected}")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        found_version = row[0] if row else None
        raise AuditCorruptError(
            f"{path}: audit schema version {found_version!r}, but this gensdk reads version {SCHEMA_VERSION}"
        )


def _head_row(conn: sqlite3.Connection) -> tuple[int, str] | None:
    return conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()


def _stored_checkpoint_every(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'checkpoint_every'").fetchone()
    try:
        every = int(row[0]) if row else None
    except (TypeError, ValueError):
        return None
    return every if every and every > 0 else None


def _meta_public_key(conn: sqlite3.Connection) -> bytes | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'public_key'").fetchone()
    if row is None or row[0] is None:
        return None
    try:
        return bytes.fromhex(row[0])
    except ValueError:
        return str(row[0]).encode()  # garbage: keep it, so it cannot match any trusted key


def _duplicates(conn: sqlite3.Connection) -> dict[int, str]:
    # Uses the UNIQUE index while it exists; an attacker who rebuilt the table without it gets a full scan.
    return repeated_record_ids(
        conn.execute(
            "SELECT seq, record_id FROM records WHERE record_id IN "
            "(SELECT record_id FROM records GROUP BY record_id HAVING count(*) > 1) ORDER BY seq"
        )
    )


@contextmanager
def _translate_errors(path: Path) -> Iterator[None]:
    """Turn sqlite3 and OS errors into gensdk audit errors that name the file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _audit_error(path, exc) from exc
    except OSError as exc:
        raise AuditError(f"cannot use the audit database {path}: {exc}") from exc


def _audit_error(path: Path, exc: sqlite3.Error) -> AuditError:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # primary result code
    text = str(exc)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
        return AuditLockedError(
            f"the audit database {path} is locked by another writer for longer than the busy timeout: {text}"
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "no such table" in text or "no such column" in text:
        return AuditCorruptError(f"{path} cannot be read as an audit trail: {text}")
    return AuditError(f"audit database {path}: {text}")
