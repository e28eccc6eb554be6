"""The SQLite audit sink on real files: appends, receipts, idempotency, keys, locking and broken files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gensdk._canonical import canonical_json
from gensdk.audit import (
    AuditReceipt,
    SQLiteAuditSink,
    VerifyReport,
    default_audit_path,
    open_audit_sink,
)
from gensdk.audit.base import GENESIS_HASH, chain_hash
from gensdk.errors import AuditCorruptError, AuditError, AuditLockedError, ConfigError

REPO = Path(__file__).resolve().parents[2]


def engine_body(i: int, **extra: object) -> dict:
    """A body shaped like the engine's."""
    return {
        "record_id": f"rec-{i:05d}",
        "kind": "generation",
        "time": f"2026-03-01T12:00:{i % 60:02d}Z",
        "verdict": "pass",
        "model": {"family": "gmm", "version": "1.0"},
        "policies": [{"id": "watermark", "verdict": "pass"}],
        "outputs": [{"index": 0, "sha256": "ab" * 32}],
        **extra,
    }


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


def count_rows(db: Path, table: str = "records") -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# --- appending -------------------------------------------------------------------------------------------------


def test_append_returns_receipt_and_is_committed_before_returning(db: Path) -> None:
    with SQLiteAuditSink(db) as sink:
        receipt = sink.append(engine_body(1))
        # another connection sees it at once: append committed before it returned
        assert count_rows(db) == 1
    stored_body = canonical_json({**engine_body(1), "seq": 1})
    assert receipt == AuditReceipt(record_id="rec-00001", seq=1, hash=chain_hash(GENESIS_HASH, stored_body))


def test_chain_links_each_record_to_the_previous_one(db: Path) -> None:
    with SQLiteAuditSink(db) as sink:
        receipts = [sink.append(engine_body(i)) for i in range(5)]
        records = list(sink.records())
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_hash"] == GENESIS_HASH
    for before, after in zip(records, records[1:]):
        assert after["prev_hash"] == before["hash"]
    assert [r["hash"] for r in records] == [r.hash for r in receipts]
    assert records[2]["body"] == {**engine_body(2), "seq": 3}


def test_fresh_chain_verifies(db: Path) -> None:
    with SQLiteAuditSink(db, checkpoint_every=10) as sink:
        for i in range(25):
            last = sink.append(engine_body(i))
        report = sink.verify()
    assert report == VerifyReport(
        ok=True, records=25, checkpoints=2, first_bad_seq=None, problem=None, head_hash=last.hash,
        key_source="private-key-file",
    )


def test_empty_trail_verifies(db: Path) -> None:
    with SQLiteAuditSink(db) as sink:
        report = sink.verify()
    assert report.ok and report.records == 0 and report.head_hash is None and report.key_source == "none"


def test_records_start_and_limit_page_through_the_trail(db: Path) -> None:
    with SQLiteAuditSink(db) as sink:
        for i in range(1203):  # more than one internal page
            sink.append({"record_id": f"r{i}", "kind": "generation"})
        assert [r["seq"] for r in sink.records(start=1199)] == [1199, 1200, 1201, 1202, 1203]
        assert [r["seq"] for r in sink.records(start=498, limit=4)] == [498, 499, 500, 501]
        assert sum(1 for _ in sink.records()) == 1203
        assert list(sink.records(limit=0)) == []
        assert sink.head().seq == 1203


def test_identical_re_append_returns_the_stored_receipt_without_writing(db: Path) -> None:
    with SQLiteAuditSink(db) as sink:
        first = sink.append(engine_body(1))
        sink.append(engine_body(2))
        reordered_keys = dict(reversed(list(engine_body(1).items())))
        again = sink.append(reordered_keys)
    assert again == first
    assert count_rows(db) == 2


def test_conflicting_re_append_is_refused_naming_the_record_id(db: Path) -> None:
    with SQLiteAuditSink(db) as sink:
        sink.append(engine_body(1))
        with pytest.raises(AuditError, match="rec-00001"):
            sink.append(engine_body(1, verdict="block"))
    assert count_rows(db) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ({"kind": "generation"}, "record_id"),
        ({"record_id": "x"}, "kind"),
        ({"record_id": "x", "kind": "generation", "seq": 4}, "seq"),
        ({"record_id": "x", "kind": "generation", "value": float("nan")}, "JSON"),
        ({"record_id": "x", "kind": "generation", "value": object()}, "JSON"),
        (["not", "a", "dict"], "dict"),
    ],
)
def test_malformed_bodies_are_refused(db: Path, body: object, message: str) -> None:
    with SQLiteAuditSink(db) as sink:
        with pytest.raises(AuditError, match=message):
            sink.append(body)  # type: ignore[arg-type]
        assert sink.head() is None


def test_records_and_checkpoints_are_append_only(db: Path) -> None:
    with SQLiteAuditSink(db, checkpoint_every=1) as sink:
        sink.append(engine_body(1))
    with sqlite3.connect(db) as conn:
        for statement in (
            "UPDATE records SET body = '{}'",
            "DELETE FROM records",
            "UPDATE checkpoints SET signature = ''",
            "DELETE FROM checkpoints",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)


# --- checkpoints and keys -------------------------------------------------------------------------------------


def test_checkpoint_every_n_records_and_on_demand(db: Path) -> None:
    with SQLiteAuditSink(db, checkpoint_every=4) as sink:
        assert sink.checkpoint() is None  # nothing to sign yet
        for i in range(10):
            sink.append(engine_body(i))
        assert sink.checkpoint() == 10
        assert sink.checkpoint() == 10  # idempotent at the same head
        assert sink.verify().checkpoints == 3
    with sqlite3.connect(db) as conn:
        assert [s for (s,) in conn.execute("SELECT seq FROM checkpoints ORDER BY seq")] == [4, 8, 10]


def test_key_file_is_created_with_mode_600(db: Path) -> None:
    with SQLiteAuditSink(db, checkpoint_every=1) as sink:
        sink.append(engine_body(1))
    key = Path(f"{db}.key")
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600


def test_key_file_mode_does_not_depend_on_a_later_chmod(db: Path) -> None:
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        with SQLiteAuditSink(db, checkpoint_every=1) as sink:
            sink.append(engine_body(1))
    finally:
        os.umask(old)
    assert Path(f"{db}.key").stat().st_mode & 0o777 == 0o600


def test_group_readable_key_is_refused(db: Path) -> None:
    key = Path(f"{db}.key")
    with SQLiteAuditSink(db, checkpoint_every=2) as sink:
        sink.append(engine_body(1))
        sink.append(engine_body(2))
    key.chmod(0o640)
    with SQLiteAuditSink(db) as sink:
        sink.append(engine_body(3))  # no checkpoint due: the key is not needed
        with pytest.raises(AuditError, match="chmod 600") as info:
            sink.append(engine_body(4))
        assert str(key) in str(info.value)
        with pytest.raises(AuditError, match="chmod 600"):
            sink.verify()
    assert count_rows(db) == 3  # the record whose checkpoint failed was rolled back


def test_missing_private_key_is_an_error_not_a_new_key(db: Path) -> None:
    key = Path(f"{db}.key")
    with SQLiteAuditSink(db, checkpoint_every=1) as sink:
        sink.append(engine_body(1))
    key.unlink()
    with SQLiteAuditSink(db, checkpoint_every=1) as sink:
        with pytest.raises(AuditError, match="missing"):
            sink.append(engine_body(2))
    assert not key.exists()


def test_custom_key_path(db: Path, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "signing.pem"
    with SQLiteAuditSink(db, checkpoint_every=1, key_path=key) as sink:
        sink.append(engine_body(1))
        assert sink.verify().key_source == "private-key-file"
    assert key.exists() and not Path(f"{db}.key").exists()


def test_checkpoint_interval_is_fixed_by_the_trail(db: Path) -> None:
    with SQLiteAuditSink(db, checkpoint_every=7) as sink:
        sink.append(engine_body(1))
    with SQLiteAuditSink(db) as sink:  # not configured: the trail's own interval
        assert sink.checkpoint_every == 7
    with pytest.raises(ConfigError, match="checkpoint_every=7"):
        SQLiteAuditSink(db, checkpoint_every=100)


# --- options, URLs, lifecycle --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, pragma", [("NORMAL", 1), ("full", 2)])
def test_synchronous_option(db: Path, mode: str, pragma: int) -> None:
    sink = SQLiteAuditSink(db, synchronous=mode)
    try:
        assert sink._conn.execute("PRAGMA synchronous").fetchone()[0] == pragma  # type: ignore[union-attr]
        assert sink._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # type: ignore[union-attr]
    finally:
        sink.close()


@pytest.mark.parametrize("options", [{"synchronous": "OFF"}, {"checkpoint_every": 0}, {"checkpoint_every": True}])
def test_bad_options_are_config_errors(db: Path, options: dict) -> None:
    with pytest.raises(ConfigError):
        SQLiteAuditSink(db, **options)


def test_open_audit_sink_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "a" / "plain.db"  # parent directory is created
    for target in (str(plain), plain, f"sqlite://{tmp_path / 'url.db'}"):
        with open_audit_sink(target) as sink:
            assert isinstance(sink, SQLiteAuditSink)
    assert plain.exists() and (tmp_path / "url.db").exists()
    monkeypatch.setenv("GENSDK_AUDIT", str(tmp_path / "env.db"))
    with open_audit_sink(None) as sink:
        assert sink.path == tmp_path / "env.db"  # type: ignore[attr-defined]


def test_default_audit_path_is_in_the_user_data_dir() -> None:
    import platformdirs

    path = default_audit_path()
    assert path.name == "audit.db"
    assert path.parent == Path(platformdirs.user_data_dir("gensdk", appauthor=False))


def test_unknown_scheme_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="'mysql'") as info:
        open_audit_sink("mysql://alice:s3cret@db.example/audit")
    assert "s3cret" not in str(info.value)


def test_sinks_mapping_takes_precedence(db: Path) -> None:
    class PluginSink(SQLiteAuditSink):
        scheme = "sqlite"

    class MemoSink(SQLiteAuditSink):
        scheme = "memo"

        def __init__(self, target: str, **options: object) -> None:
            super().__init__(str(target).replace("memo://", ""), **options)  # type: ignore[arg-type]

    with open_audit_sink(db, sinks={"sqlite": PluginSink}) as sink:
        assert type(sink) is PluginSink
    other = db.with_name("memo.db")
    with open_audit_sink(f"memo://{other}", sinks={"memo": MemoSink}, checkpoint_every=3) as sink:
        assert type(sink) is MemoSink and sink.checkpoint_every == 3


def test_closed_sink_refuses_work(db: Path) -> None:
    sink = SQLiteAuditSink(db)
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(AuditError, match="closed"):
        sink.append(engine_body(1))
    with pytest.raises(AuditError, match="closed"):
        sink.verify()


def test_create_false_refuses_a_missing_trail(db: Path) -> None:
    with pytest.raises(AuditError, match="no audit trail"):
        SQLiteAuditSink(db, create=False)
    assert not db.exists()


def test_importing_the_package_does_not_import_cryptography() -> None:
    code = "import sys, gensdk.audit; print(any(m.startswith('cryptography') for m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


# --- locking and broken files ----------------------------------------------------------------------------------


def test_lock_held_beyond_busy_timeout_is_audit_locked_error(db: Path) -> None:
    with SQLiteAuditSink(db, busy_timeout=0.2) as sink:
        sink.append(engine_body(1))
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(AuditLockedError, match=str(db)):
                sink.append(engine_body(2))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert sink.append(engine_body(2)).seq == 2  # usable again once the lock is gone


def test_garbage_file_is_audit_corrupt_error(db: Path) -> None:
    db.write_bytes(b"this is not a database at all, just some bytes" * 100)
    with pytest.raises(AuditCorruptError, match=str(db)):
        SQLiteAuditSink(db)


def test_database_of_another_application_is_audit_corrupt_error(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(AuditCorruptError, match="not a gensdk audit trail"):
        SQLiteAuditSink(db)
    with sqlite3.connect(db) as conn:  # and it was left as it was, not switched to WAL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [n for (n,) in conn.execute("SELECT name FROM sqlite_master")] == ["users"]


def test_wrong_schema_is_audit_corrupt_error(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE records(seq INTEGER PRIMARY KEY, body TEXT);"
            "CREATE TABLE checkpoints(seq INTEGER PRIMARY KEY, hash TEXT, key_id TEXT, signature TEXT);"
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
        )
    with pytest.raises(AuditCorruptError, match="columns"):
        SQLiteAuditSink(db)


def test_unknown_schema_version_is_audit_corrupt_error(db: Path) -> None:
    SQLiteAuditSink(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(AuditCorruptError, match="version"):
        SQLiteAuditSink(db)


def test_records_with_an_unreadable_body_are_still_listed(db: Path) -> None:
    with SQLiteAuditSink(db) as sink:
        sink.append(engine_body(1))
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER records_no_update")
        conn.execute("UPDATE records SET body = 'not json'")
    with SQLiteAuditSink(db) as sink:
        assert next(sink.records())["body"] == {"unreadable_body": "not json"}
        assert not sink.verify().ok


def test_records_are_json_round_trippable(db: Path) -> None:
    body = engine_body(1, note="ünïcödé ✓", nested={"b": [1, 2.5, None, True]})
    with SQLiteAuditSink(db) as sink:
        sink.append(body)
        record = next(sink.records())
    assert json.loads(json.dumps(record))["body"] == {**body, "seq": 1}
