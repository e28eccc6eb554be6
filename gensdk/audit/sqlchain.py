"""The hash chain on an SQL database, written once for every SQL backend (SQLite, PostgreSQL).

A backend says where its tables are and how its driver marks parameters (`ChainSQL`), and supplies the three
things that really differ between databases: a write transaction that holds the chain head
(`_chain_transaction`), a read query (`_query`), and how it opens a consistent snapshot for `verify`. Appending,
retries, checkpoints and their signing key, paging, lookup and the verification walk are the same SQL on both,
so they live here: a fix to the chain is made once.
"""

from __future__ import annotations

import abc
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

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
from gensdk.errors import AuditCorruptError, AuditError, ConfigError

__all__ = ["ChainSQL", "SQLChainSink"]

PAGE_ROWS = 500

T = TypeVar("T")


@dataclass(frozen=True)
class ChainSQL:
    """The statements of the chain for one backend's table names and parameter marker ('?' or '%s')."""

    records: str
    checkpoints: str
    meta: str
    marker: str

    def __call__(self, template: str) -> str:
        """`template` with {records}, {checkpoints}, {meta} named and each `?` as the driver's marker."""
        text = template.format(records=self.records, checkpoints=self.checkpoints, meta=self.meta)
        return text.replace("?", self.marker)

    @property
    def select_rows(self) -> str:
        return self("SELECT seq, record_id, prev_hash, hash, body FROM {records}")

    def head_row(self, cur: Any) -> tuple[int, str] | None:
        row = cur.execute(self("SELECT seq, hash FROM {records} ORDER BY seq DESC LIMIT 1")).fetchone()
        return (int(row[0]), row[1]) if row else None

    def meta_value(self, cur: Any, key: str) -> Any:
        row = cur.execute(self("SELECT value FROM {meta} WHERE key = ?"), (key,)).fetchone()
        return None if row is None else row[0]

    def stored_checkpoint_every(self, cur: Any) -> int | None:
        try:
            every = int(self.meta_value(cur, "checkpoint_every"))
        except (TypeError, ValueError):
            return None
        return every if every > 0 else None

    def meta_public_key(self, cur: Any) -> bytes | None:
        value = self.meta_value(cur, "public_key")
        if value is None:
            return None
        try:
            return bytes.fromhex(value)
        except ValueError:
            return str(value).encode()  # garbage: keep it, so it cannot match any trusted key

    def duplicates(self, cur: Any) -> dict[int, str]:
        # Uses the UNIQUE index while it exists; an attacker who rebuilt the table without it gets a full scan.
        return repeated_record_ids(cur.execute(self(
            "SELECT seq, record_id FROM {records} WHERE record_id IN "
            "(SELECT record_id FROM {records} GROUP BY record_id HAVING count(*) > 1) ORDER BY seq")))

    def checkpoints_of(self, cur: Any) -> dict[int, Checkpoint]:
        rows = cur.execute(self("SELECT seq, hash, key_id, signature FROM {checkpoints}")).fetchall()
        return {row[0]: Checkpoint(*row) for row in rows}


class SQLChainSink(AuditSink):
    """Appending, checkpoints, signing and reading for a chain kept in SQL tables; see the module docstring."""

    sql: ChainSQL

    def _init_chain(self, checkpoint_every: int | None) -> None:
        """State every SQL sink keeps; called first thing in the backend's __init__."""
        self._pinned_every = None if checkpoint_every is None else checked_checkpoint_every(checkpoint_every)
        self.checkpoint_every = self._pinned_every or DEFAULT_CHECKPOINT_EVERY  # replaced by the trail's own
        self._lock = threading.Lock()
        self._signing_key: Any = None
        self._key_id: str | None = None
        self._conn: Any = None
        self.key_path: Path

    # --- what a backend supplies ---------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """The trail's location as messages show it (a file, or a URL without its password)."""

    @abc.abstractmethod
    def _chain_transaction(self) -> AbstractContextManager[Any]:
        """A write transaction holding the chain head; yields something with `execute(sql, params)`."""

    @abc.abstractmethod
    def _query(self, sql: str, params: tuple) -> list[tuple]:
        """Rows of one read statement on this sink's connection."""

    @abc.abstractmethod
    def _verify_snapshot(self) -> AbstractContextManager[tuple[Any, Callable[[], Iterable[tuple]]]]:
        """(cursor, walk) on one consistent snapshot, apart from this sink's appends: `walk()` streams every
        record row in seq order."""

    def _retrying(self, action: Callable[[], T]) -> T:
        """Run a unit of work; a backend whose connection can break under it reopens and repeats it."""
        return action()

    # --- writing -------------------------------------------------------------------------------------------

    def _append_in(self, cur: Any, body: dict, record_id: str) -> AuditReceipt:
        """The append itself, inside a chain transaction: a stored record_id is a retry (same body) or an
        error (another body); otherwise the record is chained to the head and checkpointed on schedule."""
        stored = cur.execute(self.sql("SELECT seq, hash, body FROM {records} WHERE record_id = ?"), (record_id,)).fetchone()
        if stored is not None:
            return retry_receipt(record_id, stored, body)
        last_seq, prev_hash = self.sql.head_row(cur) or (0, GENESIS_HASH)
        seq = last_seq + 1
        body_json = encode_body({**body, "seq": seq}, record_id)
        record_hash = chain_hash(prev_hash, body_json)
        cur.execute(self.sql("INSERT INTO {records}(seq, record_id, prev_hash, hash, body) VALUES (?, ?, ?, ?, ?)"),
                    (seq, record_id, prev_hash, record_hash, body_json.decode()))
        if seq % self.checkpoint_every == 0:
            self._write_checkpoint(cur, seq, record_hash)
        return AuditReceipt(record_id=record_id, seq=seq, hash=record_hash)

    def append(self, body: dict) -> AuditReceipt:
        record_id = checked_body(body)
        encode_body(body, record_id)  # fail on a body without JSON form before taking the chain lock

        def append_once() -> AuditReceipt:
            with self._chain_transaction() as cur:
                return self._append_in(cur, body, record_id)

        return self._retrying(append_once)

    def checkpoint(self) -> int | None:
        """Sign the current head now (e.g. before handing the trail over); its seq, or None for an empty trail."""
        with self._chain_transaction() as cur:
            head = self.sql.head_row(cur)
            if head is None:
                return None
            seq, record_hash = head
            if cur.execute(self.sql("SELECT 1 FROM {checkpoints} WHERE seq = ?"), (seq,)).fetchone() is None:
                self._write_checkpoint(cur, seq, record_hash)
        return seq

    def public_key(self) -> tuple[bytes, str]:
        """The raw public key that signs this trail and where it came from ("private-key-file" or "meta").

        Creates the signing key if the trail has none yet, so the key can be pinned before the first
        checkpoint. Falls back to the key stored in the database only when the private key file is absent.
        """
        with self._chain_transaction() as cur:
            meta_raw = self.sql.meta_public_key(cur)
            if meta_raw is not None and not self.key_path.exists():
                return meta_raw, "meta"
            key, _ = self._signer(cur)
        return keys.public_raw(key), "private-key-file"

    def _write_checkpoint(self, cur: Any, seq: int, record_hash: str) -> None:
        key, key_id = self._signer(cur)
        signature = keys.sign(key, checkpoint_message(seq, record_hash))
        cur.execute(self.sql("INSERT INTO {checkpoints}(seq, hash, key_id, signature) VALUES (?, ?, ?, ?)"),
                    (seq, record_hash, key_id, signature))

    def _signer(self, cur: Any) -> tuple[Any, str]:
        """The signing key, loaded (or created) once; also records its public half in meta."""
        meta_raw = self.sql.meta_public_key(cur)
        if self._signing_key is None:
            self._signing_key = keys.signing_key_for(self.key_path, meta_raw, trail=self.where)
            self._key_id = keys.key_id_of(keys.public_raw(self._signing_key))
        if meta_raw is None:
            cur.execute(self.sql("INSERT INTO {meta}(key, value) VALUES ('public_key', ?) ON CONFLICT (key) DO NOTHING"),
                        (keys.public_raw(self._signing_key).hex(),))
        return self._signing_key, self._key_id  # type: ignore[return-value]

    def _trail_checkpoint_every(self, cur: Any) -> int:
        """The interval fixed when the trail was created; every writer must use it, or verify would fail."""
        stored = self.sql.stored_checkpoint_every(cur)
        if stored is None:
            raise AuditCorruptError(f"{self.where}: the audit trail's checkpoint interval is missing or unreadable")
        if self._pinned_every is not None and self._pinned_every != stored:
            raise ConfigError(
                f"the audit trail {self.where} was created with checkpoint_every={stored}, "
                f"but checkpoint_every={self._pinned_every} was configured; a trail keeps one interval"
            )
        return stored

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
        with self._verify_snapshot() as (cur, walk):
            meta_raw = self.sql.meta_public_key(cur)
            stored_every = self.sql.stored_checkpoint_every(cur)
            checkpoints, duplicates = self.sql.checkpoints_of(cur), self.sql.duplicates(cur)
            return verify_chain(
                walk(),
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
            size = PAGE_ROWS if remaining is None else min(PAGE_ROWS, remaining)
            page = self._query(self.sql.select_rows + self.sql(" WHERE seq >= ? ORDER BY seq LIMIT ?"), (next_seq, size))
            if not page:
                return
            yield from (record_dict(row) for row in page)
            next_seq = page[-1][0] + 1
            if remaining is not None:
                remaining -= len(page)

    def lookup(self, record_id: str) -> dict | None:
        rows = self._query(self.sql.select_rows + self.sql(" WHERE record_id = ?"), (record_id,))
        return record_dict(rows[0]) if rows else None

    def head(self) -> AuditReceipt | None:
        rows = self._query(self.sql("SELECT record_id, seq, hash FROM {records} ORDER BY seq DESC LIMIT 1"), ())
        return AuditReceipt(*rows[0]) if rows else None

    def _connection(self) -> Any:
        if self._conn is None:
            raise AuditError(f"the audit sink for {self.where} is closed")
        return self._conn
