"""The PostgreSQL audit sink: SQLite's hash chain, checkpoints and verification, for many writers on many machines.

    with open_audit_sink("postgresql://gensdk@db.internal:5432/audit", key_path="/run/secrets/audit.key") as sink:
        receipt = sink.append({"record_id": "r-1", "kind": "generation", ...})

Tables live in the connection's current schema (another one: `...?options=-csearch_path%3Dteam_a`), named
gensdk_audit_records, gensdk_audit_checkpoints and gensdk_audit_meta, with the same columns as SQLite's. `body`
is TEXT, not JSONB: the hash covers the exact canonical bytes, and JSONB would reorder keys and reformat numbers.

Concurrency: every append is one transaction that first takes this trail's transaction-level advisory lock
(`pg_advisory_xact_lock`), so writers on any number of connections, processes and machines take turns at the
chain head; COMMIT or ROLLBACK releases it, and so does the server when a client dies mid-append. A writer waits
up to `busy_timeout` seconds for the lock before `AuditLockedError`. One connection per sink, guarded by a lock,
serves any number of threads; do not share a sink across `fork()`.

Durability: the session runs with synchronous_commit=on, so a record `append` returned is on the server's disk
even when the server's default is weaker.

Retries: a connection lost during an append is reopened once and the append repeated. That is safe because
appending a record_id that is stored with the same body returns the stored receipt, which also covers a COMMIT
whose reply was lost.

Signing key: checkpoints are signed with one Ed25519 key file that every writer needs (`key_path`). The default,
`<user data dir>/audit-keys/postgresql-<host>-<port>-<db>-<schema>.key`, serves writers on one machine; give
writers on several machines the same file (a mounted secret). Append-only: triggers refuse UPDATE, DELETE and
TRUNCATE; a database owner can drop them, which is what `verify()` is for.

psycopg is imported when a sink is opened, so `import gensdk.audit` stays light.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

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
from gensdk.errors import AuditCorruptError, AuditError, AuditLockedError, ConfigError, MissingDependencyError

__all__ = ["SCHEMA_VERSION", "SCHEMES", "PostgresAuditSink", "redacted_url"]

SCHEMES = ("postgresql", "postgres")  # libpq accepts both
SCHEMA_VERSION = "1"
RECORDS, CHECKPOINTS, META = "gensdk_audit_records", "gensdk_audit_checkpoints", "gensdk_audit_meta"
_COLUMNS = {
    RECORDS: ["seq", "record_id", "prev_hash", "hash", "body"],
    CHECKPOINTS: ["seq", "hash", "key_id", "signature"],
    META: ["key", "value"],
}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {RECORDS}(seq BIGINT PRIMARY KEY, record_id TEXT UNIQUE NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {CHECKPOINTS}(seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, key_id TEXT NOT NULL,
    signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {META}(key TEXT PRIMARY KEY, value TEXT);
CREATE OR REPLACE FUNCTION gensdk_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'audit table % is append-only', TG_TABLE_NAME; END $$;
""" + "".join(
    f"CREATE OR REPLACE TRIGGER {table}_append_only_{level} BEFORE {ops} ON {table} "
    f"FOR EACH {level} EXECUTE FUNCTION gensdk_audit_append_only();\n"
    for table in (RECORDS, CHECKPOINTS)
    for ops, level in (("UPDATE OR DELETE", "row"), ("TRUNCATE", "statement"))
)
_SELECT_ROWS = f"SELECT seq, record_id, prev_hash, hash, body FROM {RECORDS}"
_PAGE = 500
_LOCK_NOT_AVAILABLE, _UNDEFINED_TABLE, _UNDEFINED_COLUMN = "55P03", "42P01", "42703"

T = TypeVar("T")


class PostgresAuditSink(AuditSink):
    """Hash-chained audit records in PostgreSQL; see the module docstring for locking, durability and keys."""

    scheme = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        checkpoint_every: int | None = None,
        key_path: str | os.PathLike[str] | None = None,
        create: bool = True,
    ):
        self.url = str(url)
        self.location = redacted_url(self.url)
        self.busy_timeout = float(busy_timeout)
        self.connect_timeout = float(connect_timeout)
        self._pinned_every = None if checkpoint_every is None else checked_checkpoint_every(checkpoint_every)
        self.checkpoint_every = self._pinned_every or DEFAULT_CHECKPOINT_EVERY  # replaced by the trail's own
        self._lock = threading.Lock()
        self._signing_key: Any = None
        self._key_id: str | None = None
        self._closed = False
        self._conn: Any = self._connect()
        try:
            self.schema, self._lock_key = self._open(create)
        except BaseException:
            self.close()
            raise
        self.key_path = Path(key_path).expanduser() if key_path else _default_key_path(self.url, self.schema)

    @property
    def path(self) -> str:
        """Where the trail is, without the password: what `gensdk audit` prints (SQLite's `path` is a file)."""
        return f"{self.location} (schema {self.schema})"

    # --- writing -------------------------------------------------------------------------------------------

    def append(self, body: dict) -> AuditReceipt:
        record_id = checked_body(body)
        encode_body(body, record_id)  # fail on a body without JSON form before taking the chain lock
        return self._reconnecting(lambda: self._append_once(body, record_id))

    def _append_once(self, body: dict, record_id: str) -> AuditReceipt:
        with self._transaction(chain_lock=True) as cur:
            stored = cur.execute(f"SELECT seq, hash, body FROM {RECORDS} WHERE record_id = %s", (record_id,)).fetchone()
            if stored is not None:
                return retry_receipt(record_id, stored, body)
            last_seq, prev_hash = _head_row(cur) or (0, GENESIS_HASH)
            seq = last_seq + 1
            body_json = encode_body({**body, "seq": seq}, record_id)
            record_hash = chain_hash(prev_hash, body_json)
            cur.execute(
                f"INSERT INTO {RECORDS}(seq, record_id, prev_hash, hash, body) VALUES (%s, %s, %s, %s, %s)",
                (seq, record_id, prev_hash, record_hash, body_json.decode()),
            )
            if seq % self.checkpoint_every == 0:
                self._write_checkpoint(cur, seq, record_hash)
        return AuditReceipt(record_id=record_id, seq=seq, hash=record_hash)

    def checkpoint(self) -> int | None:
        """Sign the current head now (e.g. before handing the trail over); its seq, or None for an empty trail."""
        with self._transaction(chain_lock=True) as cur:
            head = _head_row(cur)
            if head is None:
                return None
            seq, record_hash = head
            if cur.execute(f"SELECT 1 FROM {CHECKPOINTS} WHERE seq = %s", (seq,)).fetchone() is None:
                self._write_checkpoint(cur, seq, record_hash)
        return int(seq)

    def public_key(self) -> tuple[bytes, str]:
        """The raw public key that signs this trail and where it came from ("private-key-file" or "meta");
        creates the signing key if the trail has none yet, like the SQLite sink."""
        with self._transaction(chain_lock=True) as cur:
            meta_raw = _meta_public_key(cur)
            if meta_raw is not None and not self.key_path.exists():
                return meta_raw, "meta"
            key, _ = self._signer(cur)
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
        with self._errors_translated(), self._snapshot() as conn:
            meta_raw = _meta_public_key(conn.cursor())
            stored_every = _stored_checkpoint_every(conn.cursor())
            rows = conn.execute(f"SELECT seq, hash, key_id, signature FROM {CHECKPOINTS}").fetchall()
            checkpoints = {row[0]: Checkpoint(*row) for row in rows}
            duplicates = _duplicates(conn.cursor())
            walk = conn.cursor(name="gensdk_audit_verify")  # server-side: the trail is streamed, not loaded
            walk.itersize = 2000
            walk.execute(f"{_SELECT_ROWS} ORDER BY seq")
            return verify_chain(
                walk,
                checkpoints,
                trusted=trusted_key(public_key_path, self.key_path, meta_raw),
                checkpoint_every=pinned_every or stored_every or DEFAULT_CHECKPOINT_EVERY,
                stored_checkpoint_every=stored_every,
                meta_key=meta_raw,
                duplicates=duplicates,
                expect_head=expect_head,
            )

    def records(self, start: int = 1, limit: int | None = None) -> Iterator[dict]:
        # Paged, so the lock is never held while the caller works on a record (it may append meanwhile).
        remaining = limit
        next_seq = start
        while remaining is None or remaining > 0:
            size = _PAGE if remaining is None else min(_PAGE, remaining)
            page = self._query(f"{_SELECT_ROWS} WHERE seq >= %s ORDER BY seq LIMIT %s", (next_seq, size))
            if not page:
                return
            yield from (record_dict(row) for row in page)
            next_seq = page[-1][0] + 1
            if remaining is not None:
                remaining -= len(page)

    def lookup(self, record_id: str) -> dict | None:
        rows = self._query(f"{_SELECT_ROWS} WHERE record_id = %s", (record_id,))
        return record_dict(rows[0]) if rows else None

    def head(self) -> AuditReceipt | None:
        rows = self._query(f"SELECT record_id, seq, hash FROM {RECORDS} ORDER BY seq DESC LIMIT 1", ())
        return AuditReceipt(*rows[0]) if rows else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"PostgresAuditSink({self.location!r})"

    # --- connections and transactions ----------------------------------------------------------------------

    def _connect(self, **settings: Any) -> Any:
        psycopg = _psycopg()
        options = {"application_name": "gensdk-audit", "autocommit": True, **settings}
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(self.url):
            options["connect_timeout"] = max(1, round(self.connect_timeout))
        with self._errors_translated():
            conn = psycopg.connect(self.url, **options)
            try:
                conn.execute("SET synchronous_commit = on")
                conn.execute(f"SET lock_timeout = {int(self.busy_timeout * 1000)}")
                if not conn.autocommit:
                    conn.commit()  # the settings stay with the session; the next transaction starts clean
            except BaseException:
                conn.close()
                raise
        return conn

    def _open(self, create: bool) -> tuple[str, int]:
        """Create the tables on first use (under the chain lock: concurrent first writers must not race) and
        check them; the trail's schema name and its advisory lock key."""
        with self._errors_translated():
            schema = self._conn.execute("SELECT current_schema()").fetchone()[0]
            if schema is None:
                raise ConfigError(
                    f"{self.location}: no schema named in the connection's search_path exists; create it first"
                )
            lock_key = _lock_key(schema)
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
                if not _tables_exist(self._conn):
                    if not create:
                        raise AuditError(f"there is no audit trail at {self.location} (schema {schema})")
                    self._conn.execute(_SCHEMA)
                    self._conn.execute(
                        f"INSERT INTO {META}(key, value) VALUES ('schema_version', %s), ('checkpoint_every', %s) "
                        "ON CONFLICT (key) DO NOTHING",
                        (SCHEMA_VERSION, str(self.checkpoint_every)),
                    )
                _check_schema(self._conn, f"{self.location} (schema {schema})")
                self.checkpoint_every = self._trail_checkpoint_every(self._conn.cursor())
        return schema, lock_key

    def _trail_checkpoint_every(self, cur: Any) -> int:
        """The interval fixed when the trail was created; every writer must use it, or verify would fail."""
        stored = _stored_checkpoint_every(cur)
        if stored is None:
            raise AuditCorruptError(f"{self.location}: the audit trail's checkpoint interval is missing or unreadable")
        if self._pinned_every is not None and self._pinned_every != stored:
            raise ConfigError(
                f"the audit trail {self.location} was created with checkpoint_every={stored}, "
                f"but checkpoint_every={self._pinned_every} was configured; a trail keeps one interval"
            )
        return stored

    def _connection(self) -> Any:
        if self._conn is None:
            raise AuditError(f"the audit sink for {self.location} is closed")
        return self._conn

    @contextmanager
    def _transaction(self, *, chain_lock: bool) -> Iterator[Any]:
        with self._lock, self._errors_translated():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                if chain_lock:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                yield cur

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """A separate read-only REPEATABLE READ connection: one consistent snapshot of the whole trail, and a
        long walk never blocks this sink's appends."""
        psycopg = _psycopg()
        conn = self._connect(autocommit=False)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                yield conn
        finally:
            conn.close()

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        def run() -> list[tuple]:
            with self._lock, self._errors_translated():
                return self._connection().execute(sql, params).fetchall()  # type: ignore[no-any-return]

        return self._reconnecting(run)

    def _reconnecting(self, action: Callable[[], T]) -> T:
        """Run `action`; if the connection broke under it, reopen it once and run it again (see Retries)."""
        try:
            return action()
        except AuditError as exc:
            if not self._connection_lost(exc):
                raise
        with self._lock:
            with suppress(Exception):
                self._conn.close()
            self._conn = self._connect()
        return action()

    def _connection_lost(self, exc: AuditError) -> bool:
        cause = exc.__cause__
        conn = self._conn
        return (
            not self._closed
            and conn is not None
            and isinstance(cause, _psycopg().OperationalError)
            and (conn.closed or conn.broken)
        )

    @contextmanager
    def _errors_translated(self) -> Iterator[None]:
        """psycopg errors become gensdk audit errors naming the trail (never its password)."""
        psycopg = _psycopg()
        try:
            yield
        except psycopg.Error as exc:
            raise self._audit_error(exc) from exc

    def _audit_error(self, exc: Any) -> AuditError:
        state = getattr(exc, "sqlstate", None)
        text = " ".join(str(exc).replace(self.url, self.location).split())  # libpq's messages span lines
        if state == _LOCK_NOT_AVAILABLE:
            return AuditLockedError(
                f"the audit trail {self.location} is locked by another writer for longer than "
                f"busy_timeout={self.busy_timeout:g} s: {text}"
            )
        if state in (_UNDEFINED_TABLE, _UNDEFINED_COLUMN):
            return AuditCorruptError(f"{self.location} cannot be read as an audit trail: {text}")
        if isinstance(exc, _psycopg().OperationalError):
            return AuditError(f"cannot use the audit database {self.location}: {text}")
        return AuditError(f"audit database {self.location}: {text}")

    # --- signing -------------------------------------------------------------------------------------------

    def _write_checkpoint(self, cur: Any, seq: int, record_hash: str) -> None:
        key, key_id = self._signer(cur)
        signature = keys.sign(key, checkpoint_message(seq, record_hash))
        cur.execute(
            f"INSERT INTO {CHECKPOINTS}(seq, hash, key_id, signature) VALUES (%s, %s, %s, %s)",
            (seq, record_hash, key_id, signature),
        )

    def _signer(self, cur: Any) -> tuple[Any, str]:
        """The signing key, loaded (or created) once; also records its public half in meta."""
        meta_raw = _meta_public_key(cur)
        if self._signing_key is None:
            self._signing_key = keys.signing_key_for(self.key_path, meta_raw, trail=self.location)
            self._key_id = keys.key_id_of(keys.public_raw(self._signing_key))
        if meta_raw is None:
            raw_hex = keys.public_raw(self._signing_key).hex()
            cur.execute(
                f"INSERT INTO {META}(key, value) VALUES ('public_key', %s) ON CONFLICT (key) DO NOTHING", (raw_hex,)
            )
        return self._signing_key, self._key_id  # type: ignore[return-value]


# --- helpers -----------------------------------------------------------------------------------------------------


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg.conninfo
    except ImportError:
        raise MissingDependencyError("psycopg", "postgres", "the PostgreSQL audit sink") from None
    return psycopg


def redacted_url(url: str) -> str:
    """postgresql://user@host:port/db: what messages show; the password and other parameters are left out."""
    psycopg = _psycopg()
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError("the PostgreSQL audit URL cannot be parsed (postgresql://user@host:port/dbname)") from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _lock_key(schema: str) -> int:
    """The advisory lock that serialises one trail's chain head: a signed 64-bit number from its schema."""
    digest = hashlib.sha256(f"gensdk.audit:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _default_key_path(url: str, schema: str) -> Path:
    import platformdirs

    parts = _psycopg().conninfo.conninfo_to_dict(url)
    name = "-".join(str(parts.get(k) or "") for k in ("host", "port", "dbname")) + f"-{schema}"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return Path(platformdirs.user_data_dir("gensdk", appauthor=False)) / "audit-keys" / f"postgresql-{safe}.key"


def _tables_exist(conn: Any) -> bool:
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (RECORDS,)).fetchone()[0]
    return bool(found)


def _check_schema(conn: Any, where: str) -> None:
    for table, expected in _COLUMNS.items():
        found = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = %s ORDER BY ordinal_position",
                (table,),
            )
        ]
        if found != expected:
            raise AuditCorruptError(f"{where}: audit table {table} has columns {found}, expected {expected}")
    row = conn.execute(f"SELECT value FROM {META} WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        raise AuditCorruptError(
            f"{where}: audit schema version {row[0] if row else None!r}, but this gensdk reads version {SCHEMA_VERSION}"
        )


def _head_row(cur: Any) -> tuple[int, str] | None:
    row = cur.execute(f"SELECT seq, hash FROM {RECORDS} ORDER BY seq DESC LIMIT 1").fetchone()
    return tuple(row) if row else None


def _stored_checkpoint_every(cur: Any) -> int | None:
    row = cur.execute(f"SELECT value FROM {META} WHERE key = 'checkpoint_every'").fetchone()
    try:
        every = int(row[0]) if row else None
    except (TypeError, ValueError):
        return None
    return every if every and every > 0 else None


def _meta_public_key(cur: Any) -> bytes | None:
    row = cur.execute(f"SELECT value FROM {META} WHERE key = 'public_key'").fetchone()
    if row is None or row[0] is None:
        return None
    try:
        return bytes.fromhex(row[0])
    except ValueError:
        return str(row[0]).encode()  # garbage: keep it, so it cannot match any trusted key


def _duplicates(cur: Any) -> dict[int, str]:
    return repeated_record_ids(
        cur.execute(
            f"SELECT seq, record_id FROM {RECORDS} WHERE record_id IN "
            f"(SELECT record_id FROM {RECORDS} GROUP BY record_id HAVING count(*) > 1) ORDER BY seq"
        )
    )
