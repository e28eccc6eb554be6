"""Generation records named by request id: a rerun finds its record instead of adding a second one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gensdk.audit import SQLiteAuditSink
from gensdk.distributed import RequestKeyedSink, record_id_for
from gensdk.errors import AuditError
from gensdk.testing import KeywordPolicy, MockFamily, make_engine


def keyed_engine(tmp_path: Path, peers: list | None = None, name: str = "audit.db"):
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["secret"]})], audit_name=name,
                         config={"device": "cpu"})  # "auto" would import torch to look for a GPU
    engine.audit = RequestKeyedSink(engine.audit, (lambda: peers) if peers else tuple)
    return engine


def test_a_rerun_with_the_same_outputs_gets_the_stored_receipt(tmp_path: Path) -> None:
    with keyed_engine(tmp_path) as engine:
        first = engine.generate(MockFamily().enqueue("a secret", "fine"), n=2, seed=5, request_id="q-1")
        again = engine.generate(MockFamily().enqueue("a secret", "fine"), n=2, seed=5, request_id="q-1")
        records = list(engine.audit.records())
        assert engine.audit.verify().ok
    assert first.audit_record_id == again.audit_record_id == record_id_for("q-1")
    assert first.audit_hash == again.audit_hash
    assert again.texts == ["fine"]
    assert len(records) == 1


def test_a_rerun_with_other_outputs_is_refused_and_nothing_is_added(tmp_path: Path) -> None:
    with keyed_engine(tmp_path) as engine:
        engine.generate(MockFamily().enqueue("one", "two"), n=2, seed=5, request_id="q-1")
        with pytest.raises(AuditError, match=r"request 'q-1' is already in the audit trail .* not released"):
            engine.generate(MockFamily().enqueue("one", "changed"), n=2, seed=5, request_id="q-1")
        with pytest.raises(AuditError, match="different outputs or policy results"):
            engine.generate(MockFamily().enqueue("a secret", "two"), n=2, seed=5, request_id="q-1")
        assert len(list(engine.audit.records())) == 1


def test_requests_without_an_id_and_other_records_pass_through(tmp_path: Path) -> None:
    with keyed_engine(tmp_path) as engine:
        a = engine.generate(MockFamily(), n=1, seed=1)
        b = engine.generate(MockFamily(), n=1, seed=1)
        event = engine.record_event("bias-audit", {"window": 10})
        ids = [r["record_id"] for r in engine.audit.records()]
    assert a.audit_record_id != b.audit_record_id  # no request id: the engine's own random ids
    assert ids == [a.audit_record_id, b.audit_record_id, event["record_id"]]


def test_a_record_committed_in_a_peer_trail_is_found(tmp_path: Path) -> None:
    with keyed_engine(tmp_path, name="worker-a.db") as first:
        stored = first.generate(MockFamily(), n=2, seed=3, request_id="q-9")
    with SQLiteAuditSink(tmp_path / "worker-a.db", create=False) as peer:
        with keyed_engine(tmp_path, peers=[peer], name="worker-b.db") as second:
            assert second.audit.find(record_id_for("q-9"))["hash"] == stored.audit_hash
            rerun = second.generate(MockFamily(), n=2, seed=3, request_id="q-9")
            assert list(second.audit.records()) == []  # the record stays where it was committed
    assert rerun.audit_record_id == stored.audit_record_id
    assert rerun.texts == stored.texts
