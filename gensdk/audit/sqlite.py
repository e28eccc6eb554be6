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
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterable, Iterator

from gensdk.audit.sqlchain import ChainSQL, SQLChainSink
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
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


def sqlite_path(location: str | os.PathLike[str]) -> Path:
    """The file behind "sqlite:///abs/path" or a plain path (everything after "sqlite://" is the path)."""
    text = os.fspath(location)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
    if not text or text == ":memory:":
        raise ConfigError(f"the audit trail needs a file path, got {os.fspath(location)!r}")
    return Path(text).expanduser().absolute()


class SQLiteAuditSink(SQLChainSink):
    """Hash-chained audit records in one SQLite file; see the module docstring for durability and locking."""

    scheme = "sqlite"
    sql = ChainSQL(records="records", checkpoints="checkpoints", meta="meta", marker="?")

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
        self._init_chain(checkpoint_every)
        self.path = sqlite_path(location)
        self.key_path = Path(key_path).expanduser() if key_path else self.path.with_name(self.path.name + ".key")
        self.synchronous = _checked_synchronous(synchronous)
        self.busy_timeout = float(busy_timeout)
        self._conn = self._open(create)

    @property
    def where(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteAuditSink({str(self.path)!r})"

    # --- connections and transactions ----------------------------------------------------------------------

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

    @contextmanager
    def _chain_transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes SQLite's write lock at once: two writers never read the same head.
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

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock, _translate_errors(self.path):
            return self._connection().execute(sql, params).fetchall()

    @contextmanager
    def _verify_snapshot(self) -> Iterator[tuple[sqlite3.Connection, Callable[[], Iterable[tuple]]]]:
        # Its own connection, so that a long walk never blocks this sink's appends; one read transaction, so
        # records appended by others meanwhile are not half-seen.
        with _translate_errors(self.path), closing(
            sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        ) as conn:
            conn.execute("BEGIN")
            yield conn, lambda: conn.execute(self.sql.select_rows + " ORDER BY seq")
            conn.execute("COMMIT")


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
