"""`gensdk audit ...` through click's CliRunner on real audit files.

gensdk errors escape the group (the root CLI turns them into one line and an exit code), so failures are
asserted on `result.exception` and its `exit_code`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gensdk.audit import SQLiteAuditSink
from gensdk.cli.audit import audit_group
from gensdk.errors import AuditCorruptError, AuditError, AuditVerificationError


def engine_body(i: int) -> dict:
    return {
        "record_id": f"0f{i:030d}",
        "kind": "generation",
        "time": f"2026-03-01T12:00:{i:02d}Z",
        "verdict": "block" if i == 3 else "pass",
        "model": {"family": "gmm", "version": "1.0"},
        "policies": [{"id": "watermark", "verdict": "pass"}],
        "outputs": [{"index": 0, "sha256": "cd" * 32}],
    }


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    db = tmp_path / "audit.db"
    with SQLiteAuditSink(db, checkpoint_every=5) as sink:
        for i in range(1, 13):
            sink.append(engine_body(i))
        sink.append({"record_id": "bare", "kind": "bias-audit"})  # an engine record with most keys missing
    return db


def run(*args: str) -> Result:
    return CliRunner().invoke(audit_group, list(args))


def tamper_body(db: Path, seq: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER records_no_update")
        conn.execute("UPDATE records SET body = replace(body, '\"pass\"', '\"warn\"') WHERE seq = ?", (seq,))


def head_hash(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()[0]


def test_verify_ok(trail: Path) -> None:
    result = run("verify", "--audit", str(trail))
    assert result.exit_code == 0, result.output
    assert "verifies" in result.output and "13 records" in result.output and "2 signed checkpoints" in result.output
    assert head_hash(trail) in result.output


def test_verify_json_ok(trail: Path) -> None:
    result = run("verify", "--audit", str(trail), "--json", "--expect-head", head_hash(trail).upper())
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["records"] == 13 and report["key_source"] == "private-key-file"


def test_verify_failure_names_the_first_bad_record(trail: Path) -> None:
    tamper_body(trail, 4)
    result = run("verify", "--audit", str(trail))
    assert isinstance(result.exception, AuditVerificationError)
    assert result.exception.exit_code == 4
    assert "seq 4" in str(result.exception)
    assert "first bad record: seq 4" in result.output


def test_verify_json_failure(trail: Path) -> None:
    tamper_body(trail, 2)
    result = run("verify", "--audit", str(trail), "--json")
    assert isinstance(result.exception, AuditVerificationError)
    report = json.loads(result.output)
    assert report["ok"] is False and report["first_bad_seq"] == 2


def test_verify_uses_the_environment_variable(trail: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENSDK_AUDIT", str(trail))
    result = run("verify")
    assert result.exit_code == 0, result.output
    assert str(trail) in result.output


def test_verify_missing_trail_is_an_audit_error_not_a_new_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = run("verify", "--audit", str(missing))
    assert isinstance(result.exception, AuditError) and result.exception.exit_code == 5
    assert not missing.exists()


def test_verify_garbage_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00garbage" * 512)
    result = run("verify", "--audit", str(garbage))
    assert isinstance(result.exception, AuditCorruptError) and result.exception.exit_code == 5


def test_verify_rejects_a_malformed_expected_head(trail: Path) -> None:
    result = run("verify", "--audit", str(trail), "--expect-head", "abc")
    assert result.exit_code == 2 and "64-digit" in result.output


def test_verify_with_a_pinned_checkpoint_interval(trail: Path) -> None:
    assert run("verify", "--audit", str(trail), "--checkpoint-every", "5").exit_code == 0
    result = run("verify", "--audit", str(trail), "--checkpoint-every", "3")
    assert isinstance(result.exception, AuditVerificationError)
    assert "checkpoint due at seq 3" in str(result.exception)


def test_show_table(trail: Path) -> None:
    result = run("show", "--audit", str(trail), "--last", "5")
    assert result.exit_code == 0, result.output
    assert "last 5 of 13" in result.output
    assert "gmm" in result.output and "bias-audit" in result.output and "0f0000000000" in result.output
    assert "0f00000000000000000000000000000008" not in result.output  # record ids are shortened
    assert "block" not in result.output  # seq 3 is not among the last five


def test_show_json(trail: Path) -> None:
    result = run("show", "--audit", str(trail), "--last", "3", "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["seq"] for r in records] == [11, 12, 13]
    assert records[-1]["body"] == {"record_id": "bare", "kind": "bias-audit", "seq": 13}


def test_export_jsonl(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    result = run("export", "--jsonl", str(out), "--audit", str(trail))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 13
    assert set(lines[0]) == {"seq", "record_id", "prev_hash", "hash", "body"}
    assert [line["seq"] for line in lines] == list(range(1, 14))
    assert lines[0]["prev_hash"] == "0" * 64 and lines[1]["prev_hash"] == lines[0]["hash"]
    assert lines[-1]["hash"] == head_hash(trail)
    assert lines[2]["body"]["verdict"] == "block" and lines[2]["body"]["seq"] == 3


def test_export_to_stdout(trail: Path) -> None:
    result = CliRunner().invoke(audit_group, ["export", "--jsonl", "-", "--audit", str(trail)])
    assert result.exit_code == 0
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 13


def test_key_export_then_verify_with_the_public_key(trail: Path, tmp_path: Path) -> None:
    pem = tmp_path / "audit-public.pem"
    result = run("key", "export", "--out", str(pem), "--audit", str(trail))
    assert result.exit_code == 0, result.output
    assert pem.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    Path(f"{trail}.key").unlink()  # a verifier elsewhere has the trail and the pinned public key only
    result = run("verify", "--audit", str(trail), "--public-key", str(pem))
    assert result.exit_code == 0, result.output
    assert "public key file" in result.output


def test_verify_with_someone_elses_public_key_fails(trail: Path, tmp_path: Path) -> None:
    pem = tmp_path / "other.pem"
    pem.write_bytes(
        Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = run("verify", "--audit", str(trail), "--public-key", str(pem))
    assert isinstance(result.exception, AuditVerificationError)
    assert "checkpoint at seq 5" in str(result.exception)


def test_key_export_on_a_fresh_trail_creates_the_key(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    pem = tmp_path / "fresh.pem"
    assert run("key", "export", "--out", str(pem), "--audit", str(db)).exit_code == 0
    assert Path(f"{db}.key").stat().st_mode & 0o777 == 0o600
    with SQLiteAuditSink(db, checkpoint_every=100) as sink:
        for i in range(100):
            sink.append({"record_id": f"r{i}", "kind": "generation"})
    assert run("verify", "--audit", str(db), "--public-key", str(pem)).exit_code == 0


def test_key_export_falls_back_to_the_stored_key_with_a_warning(trail: Path, tmp_path: Path) -> None:
    Path(f"{trail}.key").unlink()
    pem = tmp_path / "stored.pem"
    result = CliRunner().invoke(audit_group, ["key", "export", "--out", str(pem), "--audit", str(trail)])
    assert result.exit_code == 0
    assert "warning" in result.stderr
    assert run("verify", "--audit", str(trail), "--public-key", str(pem)).exit_code == 0
