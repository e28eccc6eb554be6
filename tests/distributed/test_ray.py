"""Batch jobs on Ray Data, on the session's local cluster: a worker killed mid-job (per-worker SQLite trails,
merged), and `gensdk batch --ray` with two workers appending to one shared PostgreSQL trail."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

from gensdk.audit import SQLiteAuditSink, open_audit_sink
from gensdk.audit.merge import MERGE_KIND
from gensdk.distributed import record_id_for, run_batch

PLUGINS = {"plugins": ["gensdk.testing.plugin"], "load_entrypoints": False}


class WorkerKiller(threading.Thread):
    """SIGKILLs the Ray actor that published the first result once `after` requests are on disk."""

    def __init__(self, out: Path, after: int):
        super().__init__(daemon=True)
        self.out, self.after = out, after
        self.killed: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while self.killed is None and time.monotonic() < deadline:
            # Complete request directories only: a worker's .tmp-* staging directory (which pathlib's "*"
            # matches) is renamed away at any moment.
            done = [path for path in self.out.glob("*/record.json") if not path.parent.name.startswith(".")]
            published = sorted(done, key=os.path.getmtime)
            if len(published) >= self.after:
                self.killed = json.loads(published[0].read_text())["worker"]["pid"]
                os.kill(self.killed, signal.SIGKILL)
            time.sleep(0.02)


def test_a_job_survives_a_killed_worker_without_duplicate_records(
    ray_cluster: Any, tmp_path: Path, mock_model_dir: Path, write_requests: Callable, assert_published: Callable
) -> None:
    ids = [f"q-{i:02d}" for i in range(10)]
    source = write_requests([{"request_id": r, "prompts": ["a secret" if r == "q-05" else "hi"]} for r in ids],
                            mock_model_dir)
    # SlowPolicy keeps each request busy for a while, so the kill lands while batches are still running.
    config = {"device": "cpu", "policies": [{"id": "slow", "options": {"seconds": 0.2}},
                                             {"id": "keyword", "options": {"words": ["secret"]}}]}
    out, audit = tmp_path / "out", tmp_path / "audit.db"
    killer = WorkerKiller(out, after=3)
    killer.start()
    report = run_batch(source, out, config=config, audit=audit, use_ray=True, workers=2, batch_size=2, **PLUGINS)
    killer.join(timeout=1)

    assert killer.killed is not None
    assert [row["request_id"] for row in report.rows] == ids and report.failed == []
    assert report.rows[5]["verdict"] == "block" and report.rows[5]["released"] == 0
    pids = {row["worker"]["pid"] for row in report.rows}
    assert killer.killed in pids and len(pids) >= 2  # the dead worker's results count, others finished the job
    assert any(f"-{killer.killed}-" in source.trail for source in report.merge.sources)  # the dead one's file
    with SQLiteAuditSink(audit, create=False) as sink:
        verified = sink.verify()
        bodies = [record["body"] for record in sink.records()]
        assert assert_published(out, sink) == len(ids)
    assert verified.ok, verified.problem
    generations = [b["request_id"] for b in bodies if b["kind"] == "generation"]
    assert sorted(generations) == ids  # one record per request: the retried batch added none
    merge = [b for b in bodies if b["kind"] == MERGE_KIND][-1]
    for source_trail in merge["sources"]:  # the merged chain names each worker chain's head
        with SQLiteAuditSink(source_trail["trail"], create=False) as worker:
            head = worker.head()
            assert (head.hash if head else None) == source_trail["head_hash"]
            assert worker.verify().ok


def test_gensdk_batch_ray_with_two_workers_shares_one_postgresql_trail(
    ray_cluster: Any, pg_url: str, tmp_path: Path, mock_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture, assert_published: Callable,
) -> None:
    from gensdk.audit.keys import public_key_pem
    from gensdk.cli.main import run

    key = tmp_path / "pg.key"  # every worker signs with the one key file (the driver creates it first)
    (tmp_path / "gensdk.toml").write_text(
        'device = "cpu"\n'
        f'audit_options = {{ key_path = "{key}", checkpoint_every = 3 }}\n'
        '[[policies]]\nid = "slow"\noptions = { seconds = 0.2 }\n'  # the kill lands while batches still run
        '[[policies]]\nid = "keyword"\noptions = { words = ["secret"] }\n'
    )
    ids = [f"pg-{i}" for i in range(10)]
    lines = [{"request_id": r, "model": str(mock_model_dir), "n": 2, "prompts": ["a secret" if r == "pg-3" else "hi"]}
             for r in ids]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    monkeypatch.chdir(tmp_path)
    job = ["in.jsonl", "out", "--config", "gensdk.toml", "--audit", pg_url, "--plugin", "gensdk.testing.plugin", "--json"]
    killer = WorkerKiller(tmp_path / "out", after=3)  # a worker dies, perhaps mid-append: Ray reruns its batch
    killer.start()
    assert run(["batch", "--ray", "--workers", "2", "--batch-size", "2", *job]) == 0
    killer.join(timeout=1)
    out = capsys.readouterr().out
    summary = json.loads(out)  # stdout is the summary alone: Ray's "(raylet) A worker died ..." goes to stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert summary["done"] + summary["skipped"] == 10 and summary["errors"] == 0
    assert killer.killed in {row["worker"]["pid"] for row in rows} and len({row["worker"]["pid"] for row in rows}) >= 2
    assert not (tmp_path / "out" / "audit-workers").exists()  # a shared trail: no per-worker files to merge
    assert run(["batch", *job]) == 0  # the job run again: every request is found committed
    assert json.loads(capsys.readouterr().out)["skipped"] == 10

    with open_audit_sink(pg_url, key_path=key, create=False) as sink:
        bodies = [record["body"] for record in sink.records()]
        (tmp_path / "pub.pem").write_bytes(public_key_pem(sink.public_key()[0]))
        assert assert_published(tmp_path / "out", sink) == 10
    per_request = Counter(body["request_id"] for body in bodies if body["kind"] == "generation")
    assert per_request == Counter(ids)  # once each: neither Ray's retry nor the rerun added a record
    assert sorted(body["record_id"] for body in bodies) == sorted(record_id_for(r) for r in ids)  # nothing else
    assert run(["audit", "verify", "--audit", pg_url, "--public-key", "pub.pem"]) == 0
