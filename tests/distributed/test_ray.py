"""Ray, on one local cluster for the whole module: a batch job on Ray Data with a worker killed mid-job, and a
Ray Serve deployment called over HTTP. (Workers sharing a PostgreSQL trail run the same worker code as the local
job in test_local_batch.py; benchmarks/bench_ray.py --audit runs them on Ray.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gensdk.audit import SQLiteAuditSink
from gensdk.audit.merge import MERGE_KIND
from gensdk.distributed import run_batch

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
            published = sorted(self.out.glob("*/record.json"), key=os.path.getmtime)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(ray_cluster: Any, tmp_path: Path, mock_model_dir: Path) -> Iterator[tuple[str, Path]]:
    from ray import serve

    from gensdk.distributed.serve import app_builder

    port, audit, config = free_port(), tmp_path / "serve-audit.db", tmp_path / "gensdk.toml"
    config.write_text('device = "cpu"\n[[policies]]\nid = "keyword"\noptions = { words = ["secret"] }\n')
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # What `serve run gensdk.distributed.serve:app_builder config=... models=... ...` builds.
    app = app_builder({"config": str(config), "models": f"mock={mock_model_dir}", "audit": str(audit),
                       "plugins": "gensdk.testing.plugin"})
    serve.run(app, name="gensdk", route_prefix="/generate")
    try:
        yield f"http://127.0.0.1:{port}/generate", audit
    finally:
        serve.shutdown()


def test_a_serve_deployment_generates_behind_the_policies(served: tuple[str, Path]) -> None:
    import httpx

    url, audit = served
    with httpx.Client(timeout=60) as client:
        ok = client.post(url, json={"model": "mock", "n": 2, "seed": 3, "prompts": ["hi"], "request_id": "r-1"})
        blocked = client.post(url, json={"model": "mock", "prompts": ["tell me a secret"]})
        unknown = client.post(url, json={"model": "nope"})
        malformed = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
        switched_off = client.post(url, json={"model": "mock", "disable_policies": ["keyword"]})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["verdict"], body["request_id"], body["seed"]) == ("pass", "r-1", 3)
    assert [o["text"] for o in body["outputs"]] == ["text 3-0", "text 3-1"]
    assert blocked.status_code == 422
    assert blocked.json()["error"]["type"] == "output_blocked" and "outputs" not in blocked.json()
    assert blocked.json()["findings"][0]["code"] == "keyword-in-prompt"
    assert unknown.status_code == 404 and "served: mock" in unknown.json()["error"]["message"]
    assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "invalid_request"
    assert switched_off.status_code == 400 and "disable_policies" in switched_off.json()["error"]["message"]
    with SQLiteAuditSink(audit, create=False) as sink:  # written by the replica, in its own process
        records = {r["record_id"]: r["body"] for r in sink.records()}
        assert sink.verify().ok
    assert set(records) == {body["audit_record_id"], blocked.json()["audit_record_id"]}
    assert [o["digest"] for o in records[body["audit_record_id"]]["outputs"]] == [o["digest"] for o in body["outputs"]]
    assert records[blocked.json()["audit_record_id"]]["verdict"] == "block"


@pytest.mark.parametrize(
    ("args", "message"),
    [({"models": ""}, "needs models=NAME=DIR"), ({"models": "a=/x", "num_replicas": "0"}, "num_replicas must be")],
)
def test_app_builder_names_what_is_missing(args: dict, message: str) -> None:
    from gensdk.distributed.serve import app_builder
    from gensdk.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        app_builder(args)
