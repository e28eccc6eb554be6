"""The PostgreSQL audit sink against a real server (.ci/run starts one and sets GENSDK_TEST_POSTGRES_URL).

Without the variable these tests skip, except under CI=true, where a missing server is a failure. Each test
gets its own schema, so tests never see each other's trails.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from pathlib import Path

import pytest

from gensdk.audit import open_audit_sink
from gensdk.audit.postgres import PostgresAuditSink
from gensdk.errors import AuditCorruptError, AuditError, AuditLockedError, ConfigError

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install 'gensdk[postgres]'")

POSTGRES_ENV = "GENSDK_TEST_POSTGRES_URL"


@pytest.fixture(scope="module")
def server_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        message = f"{POSTGRES_ENV} is not set, so there is no PostgreSQL server to test against"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; under CI=true that is a failure (.ci/run starts one)", pytrace=False)
        pytest.skip(f'{message} (start one: eval "$(bash .ci/postgres.sh start)")')
    return url


@pytest.fixture
def pg_url(server_url: str) -> str:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield with_schema(server_url, schema)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def body(writer: str, i: int, **extra: object) -> dict:
    return {"record_id": f"{writer}-{i:04d}", "kind": "generation", "verdict": "pass", **extra}


def owner_sql(url: str, *statements: str) -> None:
    """What someone with write access to the database can do: drop the triggers and edit the tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


DROP_TRIGGERS = [
    f"DROP TRIGGER {table}_append_only_{level} ON {table}"
    for table in ("gensdk_audit_records", "gensdk_audit_checkpoints")
    for level in ("row", "statement")
]


def test_appends_are_chained_committed_and_verify(pg_url: str, tmp_path: Path) -> None:
    with open_audit_sink(pg_url, key_path=tmp_path / "audit.key", checkpoint_every=5) as sink:
        assert isinstance(sink, PostgresAuditSink)
        receipts = [sink.append(body("w", i)) for i in range(12)]
        assert [r.seq for r in receipts] == list(range(1, 13))
        assert sink.head() == receipts[-1]
        assert sink.lookup("w-0007")["hash"] == receipts[7].hash
        assert sink.lookup("missing") is None
        assert [r["seq"] for r in sink.records(start=4, limit=3)] == [4, 5, 6]
        report = sink.verify()
    assert report.ok, report.problem
    assert (report.records, report.checkpoints, report.key_source) == (12, 2, "private-key-file")
    # committed: a fresh connection that never saw the sink reads every record and its chain link
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT seq, prev_hash, hash FROM gensdk_audit_records ORDER BY seq").fetchall()
    assert [row[1] for row in rows[1:]] == [row[2] for row in rows[:-1]]


def test_a_retry_returns_the_stored_receipt_and_a_changed_body_is_refused(pg_url: str, tmp_path: Path) -> None:
    with PostgresAuditSink(pg_url, key_path=tmp_path / "audit.key") as sink:
        first = sink.append(body("w", 1, n=3))
        sink.append(body("w", 2))
        assert sink.append(body("w", 1, n=3)) == first
        with pytest.raises(AuditError, match=r"'w-0001' is already stored \(seq 1\) with a different body"):
            sink.append(body("w", 1, n=4))
        assert sink.head().seq == 2


def append_from_process(url: str, key_path: str, writer: str, count: int) -> list[int]:
    """Runs in a spawned process: its own sink and connection, threads sharing it."""
    seqs: list[int] = []
    with PostgresAuditSink(url, key_path=key_path) as sink:

        def write(part: int) -> None:
            for i in range(part, count, 2):
                seqs.append(sink.append(body(writer, i)).seq)

        threads = [threading.Thread(target=write, args=(part,)) for part in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sink.append(body(writer, 0)).seq in seqs  # a retry after a lost reply adds nothing
    return seqs


def test_writers_in_several_processes_build_one_chain(pg_url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    PostgresAuditSink(pg_url, key_path=key, checkpoint_every=20).close()
    count, writers = 40, 3
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        seqs = pool.starmap(append_from_process, [(pg_url, str(key), f"p{n}", count) for n in range(writers)])
    assert sorted(s for part in seqs for s in part) == list(range(1, count * writers + 1))
    with PostgresAuditSink(pg_url, key_path=key) as sink:
        ids = [r["record_id"] for r in sink.records()]
        report = sink.verify()
    assert sorted(ids) == sorted(f"p{n}-{i:04d}" for n in range(writers) for i in range(count))
    assert report.ok, report.problem
    assert (report.records, report.checkpoints) == (120, 6)


def test_the_server_refuses_updates_deletes_and_truncation(pg_url: str, tmp_path: Path) -> None:
    with PostgresAuditSink(pg_url, key_path=tmp_path / "audit.key", checkpoint_every=1) as sink:
        sink.append(body("w", 1))
    for statement in (
        "UPDATE gensdk_audit_records SET body = '{}'",
        "DELETE FROM gensdk_audit_records",
        "TRUNCATE gensdk_audit_records",
        "DELETE FROM gensdk_audit_checkpoints",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            owner_sql(pg_url, statement)


@pytest.mark.parametrize(
    ("tamper", "first_bad", "problem"),
    [
        ("UPDATE gensdk_audit_records SET body = replace(body, 'pass', 'PASS') WHERE seq = 5", 5, "was edited"),
        ("DELETE FROM gensdk_audit_records WHERE seq = 4", 4, "records were deleted"),
        ("UPDATE gensdk_audit_checkpoints SET signature = repeat('0', 128)", 3, "forged"),
        ("DELETE FROM gensdk_audit_records WHERE seq > 6", 7, "were deleted"),
    ],
)
def test_verify_names_the_first_tampered_record(
    pg_url: str, tmp_path: Path, tamper: str, first_bad: int, problem: str
) -> None:
    key = tmp_path / "audit.key"
    with PostgresAuditSink(pg_url, key_path=key, checkpoint_every=3) as sink:
        for i in range(8):
            sink.append(body("w", i))
        sink.checkpoint()  # signs seq 8, so a truncated tail leaves a checkpoint past the last record
    owner_sql(pg_url, *DROP_TRIGGERS, tamper)
    with PostgresAuditSink(pg_url, key_path=key, create=False) as sink:
        report = sink.verify()
    assert not report.ok
    assert report.first_bad_seq == first_bad
    assert problem in report.problem


def test_gensdk_audit_verify_reads_a_postgresql_url(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gensdk.cli.main import run

    key = tmp_path / "audit.key"
    with PostgresAuditSink(pg_url, key_path=key, checkpoint_every=2) as sink:
        for i in range(4):
            sink.append(body("w", i))
    assert run(["audit", "key", "export", "--audit", pg_url, "--out", str(tmp_path / "pub.pem")]) == 0
    assert run(["audit", "verify", "--audit", pg_url, "--public-key", str(tmp_path / "pub.pem")]) == 0
    out = capsys.readouterr().out
    assert "verifies: 4 records, 2 signed checkpoints" in out
    assert "schema t_" in out
    owner_sql(pg_url, *DROP_TRIGGERS, "UPDATE gensdk_audit_records SET body = replace(body, 'pass', 'x') WHERE seq = 3")
    assert run(["audit", "verify", "--audit", pg_url, "--public-key", str(tmp_path / "pub.pem")]) == 4
    assert "first bad record: seq 3" in capsys.readouterr().out


def test_read_commands_do_not_create_a_trail(pg_url: str) -> None:
    with pytest.raises(AuditError, match=r"there is no audit trail at postgresql://.*\(schema t_"):
        PostgresAuditSink(pg_url, create=False)


def test_a_trail_keeps_its_checkpoint_interval(pg_url: str, tmp_path: Path) -> None:
    PostgresAuditSink(pg_url, key_path=tmp_path / "audit.key", checkpoint_every=10).close()
    with pytest.raises(ConfigError, match="created with checkpoint_every=10, but checkpoint_every=7"):
        PostgresAuditSink(pg_url, key_path=tmp_path / "audit.key", checkpoint_every=7)


def test_a_foreign_table_is_not_taken_for_a_trail(pg_url: str) -> None:
    owner_sql(pg_url, "CREATE TABLE gensdk_audit_records(id int)")
    with pytest.raises(AuditCorruptError, match="audit table gensdk_audit_records has columns"):
        PostgresAuditSink(pg_url)


def test_an_append_survives_a_dropped_connection(pg_url: str, tmp_path: Path) -> None:
    with PostgresAuditSink(pg_url, key_path=tmp_path / "audit.key") as sink:
        sink.append(body("w", 1))
        backend = sink._conn.info.backend_pid
        owner_sql(pg_url, f"SELECT pg_terminate_backend({backend})")  # the server drops the sink's session
        assert sink.append(body("w", 2)).seq == 2
        assert sink._conn.info.backend_pid != backend
        assert sink.verify().ok


def test_a_writer_waits_for_the_chain_lock_then_gives_up(pg_url: str, tmp_path: Path) -> None:
    with PostgresAuditSink(pg_url, key_path=tmp_path / "audit.key", busy_timeout=0.3) as sink:
        with psycopg.connect(pg_url) as holder:  # another writer, stuck inside its append transaction
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (sink._lock_key,))
            with pytest.raises(AuditLockedError, match="locked by another writer .* busy_timeout=0.3 s"):
                sink.append(body("w", 1))
        assert sink.append(body("w", 1)).seq == 1  # the holder's transaction ended with its connection


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    with pytest.raises(AuditError) as caught:
        PostgresAuditSink("postgresql://auditor:s3cret@127.0.0.1:1/audit", connect_timeout=2)
    message = str(caught.value)
    assert message.startswith("cannot use the audit database postgresql://auditor@127.0.0.1:1/audit")
    assert "s3cret" not in message and "\n" not in message


def test_the_engine_writes_to_the_url_it_is_configured_with(pg_url: str, tmp_path: Path) -> None:
    from gensdk import Engine
    from gensdk.testing import KeywordPolicy, MockFamily
    from gensdk.testing import plugin as testing_plugin

    config = {"audit": pg_url, "audit_options": {"key_path": str(tmp_path / "audit.key")}, "device": "cpu"}
    policy = KeywordPolicy({"words": ["secret"]})
    with Engine(config, plugins=[testing_plugin], load_entrypoints=False, policies=[policy]) as engine:
        assert isinstance(engine.audit, PostgresAuditSink)
        result = engine.generate(MockFamily().enqueue("a secret", "fine"), n=2, seed=1, request_id="req-1")
        stored = engine.audit.lookup(result.audit_record_id)
        assert engine.audit.verify().ok
    assert result.texts == ["fine"]
    assert stored["hash"] == result.audit_hash
    assert stored["body"]["request_id"] == "req-1"
    assert [o["verdict"] for o in stored["body"]["outputs"]] == ["block", "pass"]
