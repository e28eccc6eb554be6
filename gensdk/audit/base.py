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
import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Iterator

from gensdk._canonical import canonical_json
from gensdk.errors import AuditError, ConfigError

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "GENESIS_HASH",
    "AuditReceipt",
    "AuditSink",
    "VerifyReport",
    "chain_hash",
    "checked_body",
    "checked_checkpoint_every",
    "encode_body",
    "record_dict",
    "retry_receipt",
]

GENESIS_HASH = "0" * 64
DEFAULT_CHECKPOINT_EVERY = 100


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

    def checkpoint(self) -> int | None:
        """Sign the current head now; its seq, or None when nothing was signed. Sinks that sign override this."""
        return None

    def lookup(self, record_id: str) -> dict | None:
        """The stored record with this record_id ({"seq", "record_id", "prev_hash", "hash", "body"}), or None.

        Lets a caller that derives record_ids from its own request ids (a batch job) find out whether a request
        was already committed. Backends override this with one indexed query."""
        return next((record for record in self.records() if record["record_id"] == record_id), None)

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


# --- helpers every backend shares ------------------------------------------------------------------------------


def checked_body(body: Any) -> str:
    """Validate a caller's body and return its record_id."""
    if not isinstance(body, dict):
        raise AuditError(f"an audit record body must be a dict, got {type(body).__name__}")
    for field in ("record_id", "kind"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise AuditError(f"an audit record body needs a non-empty string {field!r}")
    if "seq" in body:
        raise AuditError(f"audit record {body['record_id']!r}: 'seq' is set by the audit trail, not the caller")
    return body["record_id"]


def encode_body(body: dict, record_id: str) -> bytes:
    """Canonical JSON of a body, or an `AuditError` naming the record when it has no JSON form."""
    try:
        return canonical_json(body)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit record {record_id!r} is not JSON-serialisable: {exc}") from exc


def checked_checkpoint_every(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"audit checkpoint_every must be a positive integer, got {value!r}")
    return value


def record_dict(row: tuple) -> dict:
    """The public form of a stored (seq, record_id, prev_hash, hash, body_json) row."""
    seq, record_id, prev_hash, record_hash, body_json = row
    try:
        body = json.loads(body_json)
    except (TypeError, ValueError):
        body = {"unreadable_body": body_json}  # a tampered row must not stop `show` or `export`
    return {"seq": seq, "record_id": record_id, "prev_hash": prev_hash, "hash": record_hash, "body": body}


def retry_receipt(record_id: str, stored: tuple[int, str, str], body: dict) -> AuditReceipt:
    """The receipt for re-appending a stored (seq, hash, body_json) record: a retry must not add a record,
    and a different body under the same record_id is refused."""
    seq, record_hash, stored_json = stored
    previous = json.loads(stored_json)
    previous.pop("seq", None)
    if canonical_json(previous) != encode_body(body, record_id):
        raise AuditError(
            f"audit record_id {record_id!r} is already stored (seq {seq}) with a different body; "
            "record_ids must be unique"
        )
    return AuditReceipt(record_id=record_id, seq=seq, hash=record_hash)
