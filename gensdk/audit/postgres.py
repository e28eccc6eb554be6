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
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from gensdk.audit.sqlchain import ChainSQL, SQLChainSink
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
_LOCK_NOT_AVAILABLE, _UNDEFINED_TABLE, _UNDEFINED_COLUMN = "55P03", "42P01", "42703"

T = TypeVar("T")


class PostgresAuditSink(SQLChainSink):
    """Hash-chained audit records in PostgreSQL; see the module docstring for locking, durability and keys."""

    scheme = "postgresql"
    sql = ChainSQL(records=RECORDS, checkpoints=CHECKPOINTS, meta=META, marker="%s")

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
        self._init_chain(checkpoint_every)
        self.url = str(url)
        self.location = redacted_url(self.url)
        self.busy_timeout = float(busy_timeout)
        self.connect_timeout = float(connect_timeout)
        self._closed = False
        self._conn = self._connect()
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

    @property
    def where(self) -> str:
        return self.location

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

    @contextmanager
    def _chain_transaction(self) -> Iterator[Any]:
        # The advisory lock makes writers on every connection, process and machine take turns at the head.
        with self._lock, self._errors_translated():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                yield cur

    @contextmanager
    def _verify_snapshot(self) -> Iterator[tuple[Any, Callable[[], Any]]]:
        """A separate read-only REPEATABLE READ connection: one consistent snapshot of the whole trail, and a
        long walk never blocks this sink's appends. The walk is a server-side cursor: streamed, not loaded."""
        psycopg = _psycopg()
        with self._errors_translated():
            conn = self._connect(autocommit=False)
            try:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                with conn.transaction():
                    yield conn.cursor(), lambda: _server_side_walk(conn, self.sql.select_rows + " ORDER BY seq")
            finally:
                conn.close()

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        def run() -> list[tuple]:
            with self._lock, self._errors_translated():
                return self._connection().execute(sql, params).fetchall()  # type: ignore[no-any-return]

        return self._retrying(run)

    def _retrying(self, action: Callable[[], T]) -> T:
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


def _server_side_walk(conn: Any, sql: str) -> Any:
    walk = conn.cursor(name="gensdk_audit_verify")
    walk.itersize = 2000
    walk.execute(sql)
    return walk
