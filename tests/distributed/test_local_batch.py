"""Batch jobs without Ray: outputs per request, audit records committed first, reruns that add nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from gensdk.audit import SQLiteAuditSink, open_audit_sink
from gensdk.distributed import record_id_for, run_batch
from gensdk.errors import ConfigError, DataError, PluginLoadError

PLUGINS = {"plugins": ["gensdk.testing.plugin"], "load_entrypoints": False}


def requests(count: int, blocked: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"request_id": f"q-{i:03d}", "n": 2, "prompts": ["a secret" if i in blocked else "hello"]} for i in range(count)
    ]


def test_a_local_job_publishes_each_request_after_its_record(
    tmp_path: Path, mock_model_dir: Path, write_requests: Callable, keyword_config: Callable, assert_published: Callable
) -> None:
    audit = tmp_path / "audit.db"
    source = write_requests(requests(5, blocked=(3,)), mock_model_dir)
    progress: list[tuple[int, int, str]] = []
    report = run_batch(source, tmp_path / "out", config=keyword_config("secret"), audit=audit,
                       progress=lambda *a: progress.append(a), **PLUGINS)
    assert [row["request_id"] for row in report.rows] == [f"q-{i:03d}" for i in range(5)]
    assert [row["verdict"] for row in report.rows] == ["pass", "pass", "pass", "block", "pass"]
    assert report.summary()["released"] == 8 and report.count("done") == 5
    assert progress[-1][:2] == (5, 5)
    blocked = tmp_path / "out" / "q-003"
    assert sorted(p.name for p in blocked.iterdir()) == ["record.json"]  # the verdict, never the content
    results = [json.loads(line) for line in report.results_path.read_text().splitlines()]
    assert [r["audit_record_id"] for r in results] == [record_id_for(f"q-{i:03d}") for i in range(5)]
    with SQLiteAuditSink(audit, create=False) as sink:
        assert sink.verify().ok
        assert assert_published(tmp_path / "out", sink) == 5
        assert len(list(sink.records())) == 5


def test_running_a_job_again_adds_no_record_and_restores_lost_outputs(
    tmp_path: Path, mock_model_dir: Path, write_requests: Callable, keyword_config: Callable, assert_published: Callable
) -> None:
    audit, out = tmp_path / "audit.db", tmp_path / "out"
    source = write_requests(requests(4), mock_model_dir)
    first = run_batch(source, out, config=keyword_config("secret"), audit=audit, **PLUGINS)
    texts = (out / "q-002" / "texts.jsonl").read_text()
    shutil.rmtree(out / "q-002")  # as if the worker died between the commit and the write
    again = run_batch(source, out, config=keyword_config("secret"), audit=audit, **PLUGINS)
    assert [row["status"] for row in again.rows] == ["skipped", "skipped", "done", "skipped"]
    assert (out / "q-002" / "texts.jsonl").read_text() == texts
    assert again.rows[2]["audit_record_id"] == first.rows[2]["audit_record_id"]
    with SQLiteAuditSink(audit, create=False) as sink:
        assert len(list(sink.records())) == 4
        assert sink.verify().ok
        assert assert_published(out, sink) == 4


def test_a_changed_policy_cannot_reuse_a_committed_record(
    tmp_path: Path, mock_model_dir: Path, write_requests: Callable, keyword_config: Callable
) -> None:
    audit, out = tmp_path / "audit.db", tmp_path / "out"
    source = write_requests(requests(2), mock_model_dir)
    run_batch(source, out, config=keyword_config("secret"), audit=audit, **PLUGINS)
    shutil.rmtree(out / "q-001")
    report = run_batch(source, out, config=keyword_config("hello"), audit=audit, **PLUGINS)
    assert report.rows[1]["status"] == "error"
    assert "already in the audit trail" in report.rows[1]["error"]
    assert not (out / "q-001").exists()  # nothing released for a run its record does not describe


def test_a_request_that_fails_is_reported_and_the_job_goes_on(
    tmp_path: Path, mock_model_dir: Path, write_requests: Callable, keyword_config: Callable
) -> None:
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    source = write_requests(requests(2), mock_model_dir)
    with source.open("a") as f:
        f.write(json.dumps({"request_id": "bad", "model": str(not_a_model)}) + "\n")
    report = run_batch(source, tmp_path / "out", config=keyword_config(), audit=tmp_path / "a.db", **PLUGINS)
    assert [row["status"] for row in report.rows] == ["done", "done", "error"]
    assert report.failed[0]["error"].startswith("ModelLoadError: ")


def test_bad_configuration_and_input_stop_the_job_before_it_starts(
    tmp_path: Path, mock_model_dir: Path, write_requests: Callable
) -> None:
    source = write_requests(requests(1), mock_model_dir)
    with pytest.raises(ConfigError, match="policies.0.typo"):
        run_batch(source, tmp_path / "out", config={"policies": [{"id": "keyword", "typo": 1}]}, **PLUGINS)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"request_id": "x"}\n')
    with pytest.raises(DataError, match="broken.jsonl:1 needs a string \"model\""):
        run_batch(broken, tmp_path / "out", **PLUGINS)
    with pytest.raises(PluginLoadError, match="plugin module 'no_such_plugin_module' cannot be imported"):
        run_batch(source, tmp_path / "out", plugins=["no_such_plugin_module"], load_entrypoints=False)
    assert not (tmp_path / "out" / "q-000").exists()


def test_a_job_writes_to_a_shared_postgresql_trail(
    tmp_path: Path, pg_url: str, mock_model_dir: Path, write_requests: Callable, keyword_config: Callable,
    assert_published: Callable,
) -> None:
    config = keyword_config("secret", audit_options={"key_path": str(tmp_path / "pg.key"), "checkpoint_every": 2})
    source = write_requests(requests(3, blocked=(1,)), mock_model_dir)
    report = run_batch(source, tmp_path / "out", config=config, audit=pg_url, **PLUGINS)
    again = run_batch(source, tmp_path / "out", config=config, audit=pg_url, **PLUGINS)
    assert report.audit.startswith("postgresql://") and "?" not in report.audit
    assert [row["status"] for row in again.rows] == ["skipped"] * 3
    with open_audit_sink(pg_url, key_path=tmp_path / "pg.key", create=False) as sink:
        assert [r["record_id"] for r in sink.records()] == [record_id_for(f"q-{i:03d}") for i in range(3)]
        verified = sink.verify()
        assert assert_published(tmp_path / "out", sink) == 3
    assert verified.ok and verified.checkpoints == 2  # at seq 2 and the head the job signed at the end


def test_gensdk_batch_on_the_command_line(
    tmp_path: Path, mock_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from gensdk.cli.main import run

    (tmp_path / "gensdk.toml").write_text('device = "cpu"\n[[policies]]\nid = "keyword"\noptions = { words = ["secret"] }\n')
    lines = [{"request_id": f"t{i}", "model": str(mock_model_dir), "prompts": ["a secret" if i == 2 else "hi"]}
             for i in range(3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    monkeypatch.chdir(tmp_path)
    command = ["batch", "in.jsonl", "out", "--config", "gensdk.toml", "--audit", "trail.db",
               "--plugin", "gensdk.testing.plugin"]
    assert run([*command, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["requests"], summary["done"], summary["released"], summary["errors"]) == (3, 3, 2, 0)
    assert json.loads((tmp_path / "out" / "t2" / "record.json").read_text())["verdict"] == "block"
    assert run(["audit", "verify", "--audit", "trail.db"]) == 0
    assert run(command) == 0
    assert "3 already committed (skipped)" in capsys.readouterr().out
    (tmp_path / "mixed.jsonl").write_text(f'{{"request_id": "ok", "model": "{mock_model_dir}"}}\n'
                                          f'{{"request_id": "broken", "model": "{tmp_path}"}}\n')
    assert run(["batch", "mixed.jsonl", "out", "--audit", "trail.db", "--plugin", "gensdk.testing.plugin"]) == 1
    assert "1 of 2 requests failed (first: line 2, ModelLoadError" in capsys.readouterr().err
