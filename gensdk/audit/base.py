"""The audit sink contract and the hash chain every sink shares.

A sink stores one record per output event. Each record is chained to the one before it:

    hash = sha256(bytes.fromhex(prev_hash) + canonical_json(body_with_seq))

where `body_with_seq` is the caller's body plus `"seq": seq`, so moving a body to another position changes its
hash. The first record's `prev_hash` is `GENESIS_HASH`. Sinks for other databases (PostgreSQL, ...) arrive as
plugins; they implement `AuditSink` and reuse `chain_hash` and `gensdk.audit.verify.verify_chain` so that
every backend's trail verifies the same way.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Iterator

from gensdk.errors import AuditError

__all__ = ["GENESIS_HASH", "AuditReceipt", "AuditSink", "VerifyReport", "chain_hash"]

GENESIS_HASH = "0" * 64


def chain_hash(prev_hash: str, body_json: bytes) -> str:
    """The hex sha256 that links a record (its canonical JSON, seq included) to the one before it."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + body_json).hexdigest()


@dataclass(frozen=True)
class AuditReceipt:
    """Proof that a record is committed: where it sits in the chain and its hash."""

    record_id: str  # the record_id the caller put in the body
    seq: int  # 1-based position in the chain
    hash: str  # hex sha256 of this record


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of walking a trail. `problem` names the first bad record and what is wrong with it."""

    ok: bool
    records: int
    checkpoints: int
    first_bad_seq: int | None
    problem: str | None
    head_hash: str | None
    # Where the key that checked the checkpoint signatures came from: "public-key-file" (--public-key),
    # "private-key-file" (the sink's own signing key), "meta" (the key stored in the database itself, which an
    # attacker with write access could have replaced), or "none" (no key found).
    key_source: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditSink(abc.ABC):
    """An append-only, tamper-evident store of audit records.

    Usable as a context manager; `close()` is idempotent. Sink classes are constructed as
    `cls(target, **options)` (see `open_audit_sink`) and accept `create=False`, meaning "open an existing trail
    only" (the CLI's read commands use it so that a mistyped path is an error, not a new empty trail).
    """

    scheme: ClassVar[str]

    @abc.abstractmethod
    def append(self, body: dict) -> AuditReceipt:
        """Append one record and commit it before returning.

        `body` is a JSON-serialisable dict with at least "record_id" (str) and "kind" (str). Appending a
        record_id that is already stored returns the stored record's receipt when the bodies are equal (a
        retry), and raises `AuditError` when they differ.
        """

    @abc.abstractmethod
    def verify(
        self,
        public_key_path: str | None = None,
        *,
        expect_head: str | None = None,
        checkpoint_every: int | None = None,
    ) -> VerifyReport:
        """Walk the whole trail and report the first record that does not verify.

        `public_key_path` pins the key checkpoints must be signed with (a PEM file from `gensdk audit key
        export`). `expect_head` is a record hash saved earlier (e.g. by a nightly job); the trail must still
        contain it, which detects records deleted from the tail after the last signed checkpoint.
        `checkpoint_every` pins the checkpoint interval instead of trusting the one stored in the trail.
        """

    @abc.abstractmethod
    def records(self, start: int = 1, limit: int | None = None) -> Iterator[dict]:
        """Yield {"seq", "record_id", "prev_hash", "hash", "body"} in seq order, from seq `start` on."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection; further appends raise `AuditError`."""

    def public_key(self) -> tuple[bytes, str]:
        """The raw Ed25519 public key that signs checkpoints and where it came from; sinks that sign override."""
        raise AuditError(f"the {self.scheme!r} audit sink does not sign checkpoints, so it has no key to export")

    def head(self) -> AuditReceipt | None:
        """The last record's receipt, or None for an empty trail. Backends override this with one query."""
        last = None
        for record in self.records():
            last = record
        if last is None:
            return None
        return AuditReceipt(record_id=last["record_id"], seq=last["seq"], hash=last["hash"])

    def __enter__(self) -> AuditSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
