"""Walk an audit trail and name the first record that does not verify.

Backend-neutral: a sink hands in its rows in seq order, its checkpoints, the trusted public key and the
record_ids that occur twice; `verify_chain` does the rest, so every backend is checked by the same code.

What is detected, and where the report points (`first_bad_seq`):
- an edited body: its recomputed hash differs from the stored one           -> that record
- a deleted record: a gap in seq                                            -> the missing seq
- an inserted or reordered record: a body whose own "seq" differs from its
  row, or a prev_hash that is not the previous record's hash                -> the first such record
- a record_id stored twice                                                  -> the second one
- a rewritten chain (hashes recomputed): a checkpoint's hash differs         -> the checkpoint's seq
- a forged checkpoint, or one signed by another key than the trusted one    -> the checkpoint's seq
- a deleted checkpoint: none at a multiple of the checkpoint interval       -> that seq
- a truncated tail: a checkpoint past the last record                       -> last seq + 1
- an expected head hash (`expect_head`) no longer in the trail              -> last seq + 1
- a replaced public key or checkpoint interval in the trail's settings      -> None (no record is at fault)

Known limits (hash chains hold no secret; only the signed checkpoints do):
- Records after the last checkpoint are protected by the chain alone: someone who can write the database can
  delete them, or rewrite or append them with recomputed hashes, and still leave a valid chain. Keep the head
  hash somewhere else and pass it as `expect_head` (`--expect-head`); it must still be found in the trail,
  which reveals deleted or rewritten tail records (not records appended after it). `checkpoint()` signs the
  head on demand, e.g. before handing the trail over.
- When the only key available is the one stored in the database (`key_source == "meta"`), such an attacker can
  re-sign everything; pin the key with `gensdk audit key export` and verify with `--public-key`.
- The checkpoint interval is stored in the trail; an attacker could raise it and delete checkpoints. Pin it
  with `checkpoint_every` (`--checkpoint-every`) when the trail is verified by someone who does not trust it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from gensdk._canonical import canonical_json
from gensdk.audit import keys
from gensdk.audit.base import GENESIS_HASH, VerifyReport, chain_hash

__all__ = [
    "Checkpoint",
    "Row",
    "TrustedKey",
    "checkpoint_message",
    "repeated_record_ids",
    "trusted_key",
    "verify_chain",
]

# (seq, record_id, prev_hash, hash, body_json) as stored
Row = tuple[int, str, str, str, str]


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    key_id: str
    signature: str


@dataclass(frozen=True)
class TrustedKey:
    raw: bytes
    source: str  # see VerifyReport.key_source

    @property
    def key_id(self) -> str:
        return keys.key_id_of(self.raw)


def trusted_key(
    public_key_path: str | os.PathLike[str] | None, private_key_path: Path, stored_key: bytes | None
) -> TrustedKey | None:
    """The key checkpoints must be signed with: a pinned public key file, else the private signing key, else
    (weakest, reported as key_source "meta") the public key stored in the trail itself."""
    if public_key_path:
        return TrustedKey(keys.load_public_key_file(Path(public_key_path)), "public-key-file")
    if private_key_path.exists():
        return TrustedKey(keys.public_raw(keys.load_private_key(private_key_path)), "private-key-file")
    return TrustedKey(stored_key, "meta") if stored_key else None


def repeated_record_ids(pairs: Iterable[tuple[int, str]]) -> dict[int, str]:
    """seq -> record_id for every repeat of a record_id among (seq, record_id) pairs in seq order."""
    seen: set[str] = set()
    repeats: dict[int, str] = {}
    for seq, record_id in pairs:
        if record_id in seen:
            repeats[seq] = record_id
        seen.add(record_id)
    return repeats


def checkpoint_message(seq: int, record_hash: str) -> bytes:
    """The bytes a checkpoint signs: its position and the hash that commits to every record up to it."""
    return f"{seq}:{record_hash}".encode()


class _FirstProblem:
    """Keeps only the first problem reported; the walk goes on to count the records."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.text: str | None = None

    def report(self, seq: int | None, text: str) -> None:
        if self.text is None:
            self.seq, self.text = seq, text

    @property
    def found(self) -> bool:
        return self.text is not None


def verify_chain(
    rows: Iterable[Row],
    checkpoints: Mapping[int, Checkpoint],
    *,
    trusted: TrustedKey | None,
    checkpoint_every: int,
    stored_checkpoint_every: int | None,
    meta_key: bytes | None = None,
    duplicates: Mapping[int, str] | None = None,
    expect_head: str | None = None,
) -> VerifyReport:
    """Check every link, every checkpoint and the optional expected head; report the first problem.

    `checkpoint_every` is the interval at which checkpoints must exist (the caller's pinned value, else the
    trail's own); `stored_checkpoint_every` is what the trail itself says (None: it says nothing readable).
    `meta_key` is the public key stored in the trail, compared with a trusted key that came from elsewhere.
    """
    problem = _FirstProblem()
    duplicates = duplicates or {}
    expected = expect_head.lower() if expect_head else None
    seen_expected = expected is None
    count, last_seq, last_hash = 0, 0, GENESIS_HASH
    for row in rows:
        count += 1
        if not problem.found:
            _check_row(row, last_seq, last_hash, duplicates, problem)
            _check_checkpoint_at(row, checkpoints.get(row[0]), trusted, checkpoint_every, problem)
        seen_expected = seen_expected or row[3] == expected
        last_seq, last_hash = row[0], row[3]
    _check_tail(checkpoints, last_seq, problem)
    if not seen_expected:
        problem.report(
            last_seq + 1,
            f"the expected head {expected} is not in the trail (its last record is seq {last_seq}): "
            "records were deleted from the tail or the trail was rewritten",
        )
    _check_settings(checkpoint_every, stored_checkpoint_every, problem)
    _check_meta_key(trusted, meta_key, problem)
    return VerifyReport(
        ok=not problem.found,
        records=count,
        checkpoints=len(checkpoints),
        first_bad_seq=problem.seq,
        problem=problem.text,
        head_hash=last_hash if count else None,
        key_source=trusted.source if trusted else "none",
    )


def _check_row(row: Row, prev_seq: int, prev_hash: str, duplicates: Mapping[int, str], problem: _FirstProblem) -> None:
    seq, record_id, stored_prev, stored_hash, body_json = row
    name = f"record seq {seq} (record_id {record_id!r})"
    if seq != prev_seq + 1:
        _report_misplaced_seq(seq, prev_seq, problem)
        return
    body = _parse_body(body_json)
    if body is None:
        problem.report(seq, f"{name}: its body is not a JSON object, so the record was edited")
    elif body.get("seq") != seq:
        problem.report(
            seq,
            f"{name}: its body says seq {body.get('seq')!r}, so the record was moved "
            "(a record was inserted, deleted or reordered before it)",
        )
    elif body.get("record_id") != record_id:
        problem.report(seq, f"{name}: its body names record_id {body.get('record_id')!r}, so the row was edited")
    elif seq in duplicates:
        problem.report(seq, f"{name}: this record_id is already used by an earlier record (a duplicate was inserted)")
    elif stored_prev != prev_hash:
        problem.report(
            seq, f"{name}: its prev_hash is not the hash of record seq {prev_seq}, so the chain was broken here"
        )
    elif _recomputed_hash(prev_hash, body) != stored_hash:
        problem.report(seq, f"{name}: its hash does not match its content, so the record was edited")


def _report_misplaced_seq(seq: int, prev_seq: int, problem: _FirstProblem) -> None:
    if seq > prev_seq + 1:
        missing = f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seqs {prev_seq + 1}..{seq - 1}"
        problem.report(prev_seq + 1, f"record {missing} is missing before record seq {seq}: records were deleted")
    else:
        problem.report(seq, f"record seq {seq} appears after record seq {prev_seq}: records were reordered")


def _parse_body(body_json: str) -> dict | None:
    try:
        body = json.loads(body_json)
    except (TypeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _recomputed_hash(prev_hash: str, body: dict) -> str | None:
    try:
        return chain_hash(prev_hash, canonical_json(body))
    except ValueError:  # NaN smuggled into the body: it has no canonical form, so it cannot be ours
        return None


def _check_checkpoint_at(
    row: Row, cp: Checkpoint | None, trusted: TrustedKey | None, every: int, problem: _FirstProblem
) -> None:
    if problem.found:
        return
    if cp is None:
        if row[0] % every == 0:
            problem.report(
                row[0],
                f"the checkpoint due at seq {row[0]} (one every {every} records) is missing: it was deleted",
            )
        return
    where = f"checkpoint at seq {cp.seq}"
    if cp.hash != row[3]:
        problem.report(
            cp.seq,
            f"{where} signs hash {cp.hash[:16]}… but record seq {cp.seq} has hash {row[3][:16]}…: "
            "the records up to it were rewritten",
        )
    elif trusted is None:
        problem.report(cp.seq, f"{where} cannot be checked: no public key is available (pass --public-key)")
    elif cp.key_id != trusted.key_id:
        problem.report(
            cp.seq,
            f"{where} was signed by key {cp.key_id}, not by the trusted key {trusted.key_id} "
            f"(from {trusted.source}): the trail was re-signed",
        )
    elif not keys.signature_is_valid(trusted.raw, checkpoint_message(cp.seq, cp.hash), cp.signature):
        problem.report(cp.seq, f"{where} has a signature that does not verify: it was forged")


def _check_tail(checkpoints: Mapping[int, Checkpoint], last_seq: int, problem: _FirstProblem) -> None:
    beyond = [seq for seq in checkpoints if seq > last_seq]
    if beyond:
        problem.report(
            last_seq + 1,
            f"checkpoint at seq {max(beyond)} points past the last record (seq {last_seq}): "
            f"records from seq {last_seq + 1} on were deleted",
        )


def _check_settings(every: int, stored_every: int | None, problem: _FirstProblem) -> None:
    if stored_every is None:
        problem.report(None, "the checkpoint interval stored in the trail is missing or unreadable: it was altered")
    elif stored_every != every:
        problem.report(
            None,
            f"the trail says a checkpoint is due every {stored_every} records, but every {every} was expected: "
            "its settings were changed",
        )


def _check_meta_key(trusted: TrustedKey | None, meta_key: bytes | None, problem: _FirstProblem) -> None:
    if trusted is None or meta_key is None or trusted.source == "meta" or meta_key == trusted.raw:
        return
    problem.report(
        None,
        f"the public key stored in the audit database (key id {keys.key_id_of(meta_key)}) is not the trusted key "
        f"(key id {trusted.key_id}, from {trusted.source}): it was replaced",
    )
