"""Many writers on one trail: threads sharing a sink, processes each with their own sink on the same file."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

from gensdk.audit import SQLiteAuditSink

APPENDS = 200


def body(writer: str, i: int) -> dict:
    return {"record_id": f"{writer}-{i:04d}", "kind": "generation", "verdict": "pass", "model": {"family": "gmm"}}


def assert_complete_trail(db: Path, expected_ids: set[str]) -> None:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq, record_id FROM records ORDER BY seq").fetchall()
    assert [seq for seq, _ in rows] == list(range(1, len(expected_ids) + 1))  # contiguous, no duplicates
    assert {record_id for _, record_id in rows} == expected_ids
    with SQLiteAuditSink(db) as sink:
        report = sink.verify()
    assert report.ok, report.problem
    assert report.records == len(expected_ids)
    assert report.checkpoints == len(expected_ids) // 100


def test_threads_share_one_sink(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    errors: list[BaseException] = []
    with SQLiteAuditSink(db) as sink:

        def write(writer: str) -> None:
            try:
                for i in range(APPENDS):
                    sink.append(body(writer, i))
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert_complete_trail(db, {f"t{n}-{i:04d}" for n in range(8) for i in range(APPENDS)})


def append_from_process(db: str, writer: str) -> int:
    """Runs in a spawned process: its own sink on the shared file."""
    with SQLiteAuditSink(db) as sink:
        seqs = [sink.append(body(writer, i)).seq for i in range(APPENDS)]
        retried = sink.append(body(writer, 0))  # a retry after a lost reply must not add a record
        assert retried.seq == seqs[0]
    return len(seqs)


def test_processes_each_with_their_own_sink(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    SQLiteAuditSink(db).close()  # created once; the key appears with the first checkpoint, under the write lock
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        counts = pool.starmap(append_from_process, [(str(db), f"p{n}") for n in range(4)])
    assert counts == [APPENDS] * 4
    assert_complete_trail(db, {f"p{n}-{i:04d}" for n in range(4) for i in range(APPENDS)})
