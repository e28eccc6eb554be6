"""Merging per-worker SQLite trails: verified sources, unchanged bodies, a merge record naming their heads."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

from gensdk._canonical import canonical_json
from gensdk.audit import SQLiteAuditSink
from gensdk.audit.merge import MERGE_KIND, merge_trails
from gensdk.distributed.job import JobSpec
from gensdk.distributed.requests import read_requests, record_id_for
from gensdk.distributed.worker import BatchWorker
from gensdk.errors import AuditError, AuditVerificationError


def trail(path: Path, writer: str, count: int, **extra: Any) -> SQLiteAuditSink:
    sink = SQLiteAuditSink(path, checkpoint_every=2)
    for i in range(count):
        sink.append({"record_id": f"{writer}-{i}", "kind": "generation", "verdict": "pass", **extra})
    return sink


def test_merged_records_keep_their_bodies_and_the_merge_names_each_head(tmp_path: Path) -> None:
    a, b = trail(tmp_path / "a.db", "a", 3), trail(tmp_path / "b.db", "b", 2)
    with a, b, SQLiteAuditSink(tmp_path / "merged.db") as target:
        report = merge_trails([a, b], target)
        merged = list(target.records())
        heads = [a.head(), b.head()]
        again = merge_trails([a, b], target)
        total = len(list(target.records()))
        sources = [r["body"] for r in [*a.records(), *b.records()]]
    assert report.target.ok and report.appended == 5 and again.appended == 0
    assert total == 7  # a second merge adds its own merge record and nothing else
    assert [r["record_id"] for r in merged[:5]] == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    for copied, original in zip(merged, sources):
        assert canonical_json({**copied["body"], "seq": 0}) == canonical_json({**original, "seq": 0})
    merge = merged[5]["body"]
    assert merge["kind"] == MERGE_KIND
    assert [(s["head_seq"], s["head_hash"]) for s in merge["sources"]] == [(h.seq, h.hash) for h in heads]
    assert all(s["key_id"] for s in merge["sources"])  # both sources hold signed checkpoints


def test_a_source_that_does_not_verify_is_not_merged(tmp_path: Path) -> None:
    trail(tmp_path / "a.db", "a", 3).close()
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.execute("DROP TRIGGER records_no_update")
        conn.execute("UPDATE records SET body = replace(body, 'pass', 'PASS') WHERE seq = 2")
    with SQLiteAuditSink(tmp_path / "a.db", create=False) as a, SQLiteAuditSink(tmp_path / "m.db") as target:
        with pytest.raises(AuditVerificationError, match=r"a\.db does not verify, so it was not merged: record seq 2"):
            merge_trails([a], target)
        assert target.head() is None


def test_one_record_id_with_two_bodies_is_refused(tmp_path: Path) -> None:
    with trail(tmp_path / "a.db", "x", 1) as a, trail(tmp_path / "b.db", "x", 1, verdict_note="other") as b:
        with SQLiteAuditSink(tmp_path / "m.db") as target:
            with pytest.raises(AuditError, match=r"cannot merge record seq 1 of .*b\.db: .*'x-0' is already stored"):
                merge_trails([a, b], target)


def test_a_replacement_worker_finds_what_the_dead_one_committed(
    tmp_path: Path, mock_model_dir: Path, write_requests: Callable, keyword_config: Callable,
    assert_published: Callable,
) -> None:
    """Ray's retry without Ray: worker A commits four requests, publishes three and dies; worker B reruns all."""
    items = read_requests(write_requests([{"request_id": f"q-{i}", "n": 2} for i in range(6)], mock_model_dir))
    job = JobSpec(str(tmp_path / "out"), keyword_config("secret"), str(tmp_path / "audit.db"), shared_audit=False,
                  plugins=("gensdk.testing.plugin",), load_entrypoints=False)
    first = BatchWorker(job)
    assert [first.run(item)["status"] for item in items[:3]] == ["done"] * 3
    first.engine.generate(items[3].model, items[3].request)  # committed, then the worker died before publishing
    first.close()
    second = BatchWorker(job)
    statuses = [second.run(item)["status"] for item in items]
    added = [r["record_id"] for r in second.audit.records()]
    second.close()
    assert statuses == ["skipped"] * 3 + ["done"] * 3
    assert added == [record_id_for("q-4"), record_id_for("q-5")]  # q-3 matched the dead worker's record
    with SQLiteAuditSink(job.audit) as target:
        sources = [SQLiteAuditSink(path, create=False) for path in job.worker_trail_paths()]
        report = merge_trails(sources, target)
        for source in sources:
            source.close()
        ids = [r["body"].get("request_id") for r in target.records() if r["body"]["kind"] == "generation"]
        assert assert_published(job.out_dir, target) == 6
    assert report.target.ok and sorted(ids) == [f"q-{i}" for i in range(6)]
