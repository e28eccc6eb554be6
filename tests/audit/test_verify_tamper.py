"""Tampering with a real audit database, the way an attacker with write access would, must not verify.

Each attack first drops the append-only triggers (they stop accidents, not attackers), then edits the file
with plain sqlite3. Verification must fail and name the first record that no longer fits.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gensdk._canonical import canonical_json, sha256_hex
from gensdk.audit import SQLiteAuditSink, VerifyReport
from gensdk.audit.base import GENESIS_HASH, chain_hash
from gensdk.audit.keys import public_key_pem, public_raw


def engine_body(i: int) -> dict:
    return {
        "record_id": f"rec-{i:05d}",
        "kind": "generation",
        "time": f"2026-03-01T12:00:{i % 60:02d}Z",
        "verdict": "pass" if i % 3 else "block",
        "model": {"family": "gmm", "version": "1.0"},
        "outputs": [{"index": 0, "sha256": sha256_hex(str(i).encode())}],
    }


def make_trail(db: Path, n: int, every: int = 10) -> str:
    """Append n records; return the head hash (what a careful operator would have saved elsewhere)."""
    with SQLiteAuditSink(db, checkpoint_every=every) as sink:
        for i in range(1, n + 1):
            head = sink.append(engine_body(i))
    return head.hash


def verify(db: Path, **options: object) -> VerifyReport:
    with SQLiteAuditSink(db) as sink:
        return sink.verify(**options)  # type: ignore[arg-type]


# --- the attacker's toolbox ------------------------------------------------------------------------------------


def attacker(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


def body_at(conn: sqlite3.Connection, seq: int) -> dict:
    return json.loads(conn.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()[0])


def set_body(conn: sqlite3.Connection, seq: int, body: dict) -> None:
    conn.execute("UPDATE records SET body = ? WHERE seq = ?", (canonical_json(body).decode(), seq))


def edit(conn: sqlite3.Connection, seq: int) -> None:
    body = body_at(conn, seq)
    body["verdict"] = "pass" if body["verdict"] != "pass" else "block"  # hide a blocked output, or the reverse
    set_body(conn, seq, body)


def rehash_from(conn: sqlite3.Connection, seq: int) -> None:
    """Recompute prev_hash/hash from `seq` on, as anyone can: the chain holds no secret."""
    row = conn.execute("SELECT hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1", (seq,)).fetchone()
    prev = row[0] if row else GENESIS_HASH
    for s, body in conn.execute("SELECT seq, body FROM records WHERE seq >= ? ORDER BY seq", (seq,)).fetchall():
        record_hash = chain_hash(prev, body.encode())
        conn.execute("UPDATE records SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, record_hash, s))
        prev = record_hash


def renumber_from(conn: sqlite3.Connection, seq: int, shift: int) -> None:
    conn.execute("UPDATE records SET seq = -seq WHERE seq >= ?", (seq,))  # two steps: seq is a primary key
    conn.execute("UPDATE records SET seq = -seq + ? WHERE seq < 0", (shift,))


def insert_forged(conn: sqlite3.Connection, seq: int, record_id: str = "forged") -> None:
    """Make room at `seq` and insert a record that links correctly to the one before it."""
    renumber_from(conn, seq, 1)
    row = conn.execute("SELECT hash FROM records WHERE seq = ?", (seq - 1,)).fetchone()
    prev = row[0] if row else GENESIS_HASH
    body = canonical_json({"record_id": record_id, "kind": "generation", "verdict": "pass", "seq": seq})
    row = (seq, record_id, prev, chain_hash(prev, body), body.decode())
    conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?)", row)


def swap(conn: sqlite3.Connection, i: int, j: int, columns: tuple[str, ...]) -> None:
    rows = {s: conn.execute(f"SELECT {', '.join(columns)} FROM records WHERE seq = ?", (s,)).fetchone() for s in (i, j)}
    conn.execute("UPDATE records SET record_id = 'tmp-' || record_id WHERE seq IN (?, ?)", (i, j))  # UNIQUE
    for target, source in ((i, j), (j, i)):
        assignments = ", ".join(f"{c} = ?" for c in columns)
        conn.execute(f"UPDATE records SET {assignments} WHERE seq = ?", (*rows[source], target))
    conn.execute("UPDATE records SET record_id = substr(record_id, 5) WHERE record_id LIKE 'tmp-%'")


def resign_with(conn: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    """Re-sign every checkpoint over the current hashes with the attacker's key and swap it into meta."""
    raw = public_raw(key)
    key_id = sha256_hex(raw)[:16]
    for (seq,) in conn.execute("SELECT seq FROM checkpoints").fetchall():
        record_hash = conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()[0]
        signature = key.sign(f"{seq}:{record_hash}".encode()).hex()
        conn.execute(
            "UPDATE checkpoints SET hash = ?, key_id = ?, signature = ? WHERE seq = ?",
            (record_hash, key_id, signature, seq),
        )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'public_key'", (raw.hex(),))


def assert_caught(report: VerifyReport, seq: int | None, *words: str) -> None:
    assert not report.ok
    assert report.first_bad_seq == seq, report.problem
    for word in words:
        assert word in (report.problem or ""), report.problem


# --- single attacks ---------------------------------------------------------------------------------------------


def test_untouched_trail_verifies(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    head = make_trail(db, 25)
    report = verify(db, expect_head=head)
    assert report.ok and report.records == 25 and report.checkpoints == 2 and report.head_hash == head


def test_edited_body(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 20)
    edit(attacker(db), 7)
    assert_caught(verify(db), 7, "seq 7", "rec-00007", "edited")


def test_edited_body_with_recomputed_chain_is_caught_by_the_next_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    conn = attacker(db)
    edit(conn, 5)
    rehash_from(conn, 5)
    assert_caught(verify(db), 10, "checkpoint at seq 10", "rewritten")


def test_edit_after_the_last_checkpoint_needs_the_saved_head(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    head = make_trail(db, 25)
    conn = attacker(db)
    edit(conn, 23)
    rehash_from(conn, 23)
    assert verify(db).ok  # the documented limit: nothing inside the file protects the unsigned tail
    assert_caught(verify(db, expect_head=head), 26, "expected head")


def test_deleted_middle_record(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 20)
    attacker(db).execute("DELETE FROM records WHERE seq = 5")
    assert_caught(verify(db), 5, "seq 5", "deleted")


def test_deleted_range_names_the_first_missing_record(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 20)
    attacker(db).execute("DELETE FROM records WHERE seq BETWEEN 4 AND 6")
    assert_caught(verify(db), 4, "seqs 4..6", "deleted")


def test_deleted_tail_past_a_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    attacker(db).execute("DELETE FROM records WHERE seq > 15")
    assert_caught(verify(db), 16, "checkpoint at seq 20", "past the last record")


def test_deleted_tail_after_the_last_checkpoint_needs_the_saved_head(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    head = make_trail(db, 25)
    attacker(db).execute("DELETE FROM records WHERE seq > 22")
    assert verify(db).ok  # the documented limit
    assert_caught(verify(db, expect_head=head), 23, "expected head", "deleted")


def test_inserted_record_in_the_middle(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 20)
    insert_forged(attacker(db), 5)
    # The forged record links correctly; the record it pushed along no longer fits at seq 6.
    assert_caught(verify(db), 6, "seq 6", "rec-00005", "moved")


def test_inserted_record_with_recomputed_chain(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 20)
    conn = attacker(db)
    insert_forged(conn, 5)
    for seq in range(6, 22):  # rewrite the pushed bodies' seq too, then every hash
        set_body(conn, seq, {**body_at(conn, seq), "seq": seq})
    rehash_from(conn, 5)
    assert_caught(verify(db), 10, "checkpoint at seq 10")


@pytest.mark.parametrize("columns", [("body",), ("record_id", "prev_hash", "hash", "body")], ids=["bodies", "rows"])
def test_swapped_records(tmp_path: Path, columns: tuple[str, ...]) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 20)
    swap(attacker(db), 3, 8, columns)
    assert_caught(verify(db), 3, "seq 3", "says seq 8")


def test_duplicated_record_id(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 12)
    conn = attacker(db)
    conn.executescript(  # rebuild the table without its UNIQUE constraint
        "CREATE TABLE r2(seq INTEGER PRIMARY KEY, record_id TEXT, prev_hash TEXT, hash TEXT, body TEXT);"
        "INSERT INTO r2 SELECT * FROM records; DROP TABLE records; ALTER TABLE r2 RENAME TO records;"
    )
    prev = conn.execute("SELECT hash FROM records WHERE seq = 12").fetchone()[0]
    body = canonical_json({**engine_body(4), "seq": 13})
    conn.execute("INSERT INTO records VALUES (13, 'rec-00004', ?, ?, ?)", (prev, chain_hash(prev, body), body.decode()))
    assert_caught(verify(db), 13, "rec-00004", "already used")


def test_forged_checkpoint_signature(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    conn = attacker(db)
    seq, record_hash = conn.execute("SELECT seq, hash FROM checkpoints WHERE seq = 20").fetchone()
    forged = Ed25519PrivateKey.generate().sign(f"{seq}:{record_hash}".encode()).hex()
    conn.execute("UPDATE checkpoints SET signature = ? WHERE seq = 20", (forged,))
    assert_caught(verify(db), 20, "checkpoint at seq 20", "forged")


def test_deleted_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    conn = attacker(db)
    conn.execute("DELETE FROM checkpoints")
    edit(conn, 3)
    rehash_from(conn, 3)
    assert_caught(verify(db), 10, "checkpoint due at seq 10", "missing")


def test_raised_checkpoint_interval_is_caught_when_the_interval_is_pinned(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    conn = attacker(db)
    conn.execute("DELETE FROM checkpoints")
    conn.execute("UPDATE meta SET value = '1000' WHERE key = 'checkpoint_every'")
    edit(conn, 3)
    rehash_from(conn, 3)
    assert verify(db).ok  # the documented limit when the stored interval is trusted
    assert_caught(verify(db, checkpoint_every=10), 10, "missing")


def test_replaced_public_key_and_re_signed_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    pinned = tmp_path / "pinned.pem"
    with SQLiteAuditSink(db) as sink:
        pinned.write_bytes(public_key_pem(sink.public_key()[0]))
    conn = attacker(db)
    edit(conn, 3)
    rehash_from(conn, 3)
    resign_with(conn, Ed25519PrivateKey.generate())

    # trusted key from the private key file next to the database
    assert_caught(verify(db), 10, "checkpoint at seq 10", "not by the trusted key", "private-key-file")
    # trusted key from --public-key, with the private key out of reach
    Path(f"{db}.key").rename(tmp_path / "elsewhere.key")
    assert_caught(verify(db, public_key_path=str(pinned)), 10, "public-key-file")
    # only the database's own key left: the documented limit, and the report says where the key came from
    report = verify(db)
    assert report.ok and report.key_source == "meta"


def test_replaced_public_key_alone(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    raw = public_raw(Ed25519PrivateKey.generate())
    attacker(db).execute("UPDATE meta SET value = ? WHERE key = 'public_key'", (raw.hex(),))
    assert_caught(verify(db), None, "public key stored in the audit database", "replaced")


def test_wrong_pinned_public_key(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    make_trail(db, 25)
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert_caught(verify(db, public_key_path=str(other)), 10, "not by the trusted key")


# --- any single attack ------------------------------------------------------------------------------------------

Attack = Callable[[sqlite3.Connection, st.DataObject, int], None]


def _seq(data: st.DataObject, n: int) -> int:
    return data.draw(st.integers(1, n), label="seq")


def _pair(data: st.DataObject, n: int) -> tuple[int, int]:
    i = data.draw(st.integers(1, n - 1), label="i")
    return i, data.draw(st.integers(i + 1, n), label="j")


def _checkpoint_seq(conn: sqlite3.Connection, data: st.DataObject) -> int:
    seqs = [s for (s,) in conn.execute("SELECT seq FROM checkpoints ORDER BY seq")]
    return data.draw(st.sampled_from(seqs), label="checkpoint")


def _edit_and_rehash(conn: sqlite3.Connection, data: st.DataObject, n: int) -> None:
    seq = _seq(data, n)
    edit(conn, seq)
    rehash_from(conn, seq)


def _insert(conn: sqlite3.Connection, data: st.DataObject, n: int) -> None:
    seq = _seq(data, n)
    insert_forged(conn, seq)
    if data.draw(st.booleans(), label="rehash"):
        rehash_from(conn, seq)


def _forge_signature(conn: sqlite3.Connection, data: st.DataObject, n: int) -> None:
    seq = _checkpoint_seq(conn, data)
    conn.execute("UPDATE checkpoints SET signature = ? WHERE seq = ?", ("00" * 64, seq))


def _delete_checkpoint_and_rewrite(conn: sqlite3.Connection, data: st.DataObject, n: int) -> None:
    seq = _checkpoint_seq(conn, data)
    conn.execute("DELETE FROM checkpoints WHERE seq >= ?", (seq,))
    edit(conn, seq)
    rehash_from(conn, seq)


def _resign(conn: sqlite3.Connection, data: st.DataObject, n: int) -> None:
    _edit_and_rehash(conn, data, n)
    resign_with(conn, Ed25519PrivateKey.generate())


ATTACKS: dict[str, Attack] = {
    "edit": lambda conn, data, n: edit(conn, _seq(data, n)),
    "edit+rehash": _edit_and_rehash,
    "delete": lambda conn, data, n: conn.execute("DELETE FROM records WHERE seq = ?", (_seq(data, n),)),
    "truncate": lambda conn, data, n: conn.execute("DELETE FROM records WHERE seq >= ?", (_seq(data, n),)),
    "swap bodies": lambda conn, data, n: swap(conn, *_pair(data, n), ("body",)),
    "swap rows": lambda conn, data, n: swap(conn, *_pair(data, n), ("record_id", "prev_hash", "hash", "body")),
    "insert": _insert,
    "overwrite hash": lambda conn, data, n: conn.execute(
        "UPDATE records SET hash = ? WHERE seq = ?", ("ee" * 32, _seq(data, n))
    ),
    "forge signature": _forge_signature,
    "delete checkpoint + rewrite": _delete_checkpoint_and_rewrite,
    "re-sign with another key": _resign,
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 20), every=st.integers(2, 6), attack=st.sampled_from(sorted(ATTACKS)), data=st.data())
def test_any_single_attack_is_detected(n: int, every: int, attack: str, data: st.DataObject) -> None:
    every = min(every, n)  # at least one signed checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        head = make_trail(db, n, every)
        conn = attacker(db)
        ATTACKS[attack](conn, data, n)
        conn.close()
        report = verify(db, expect_head=head)
    assert not report.ok, f"{attack} went unnoticed"
    assert report.problem
