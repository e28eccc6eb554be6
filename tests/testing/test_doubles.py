"""The test doubles gensdk ships for plugin authors behave as documented."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gensdk import Request, TableOutput, Verdict
from gensdk.plugins import ESSENTIAL_PLUGIN
from gensdk.testing import (
    KeywordPolicy,
    MarkerProcessor,
    MockFamily,
    NoopPolicy,
    RecordingPolicy,
    SlowPolicy,
    make_engine,
)


def test_mock_family_returns_queued_texts_then_seeded_ones(tmp_path: Path) -> None:
    model = MockFamily().enqueue("first", "second")
    result = make_engine(tmp_path).generate(model, n=3, seed=4)
    assert result.texts == ["first", "second", "text 4-2"]
    assert len(model.queue) == 0  # consumed


def test_mock_family_history_records_each_request(tmp_path: Path) -> None:
    model = MockFamily()
    engine = make_engine(tmp_path, config={"max_batch_size": 2})
    engine.generate(model, n=3, seed=1, prompts=["hi"])
    assert [(r.n, r.prompts) for r in model.history] == [(2, ["hi"]), (1, ["hi"])]
    assert all(isinstance(r, Request) for r in model.history)


def test_mock_family_applies_marker_processors() -> None:
    from gensdk import GenerationContext

    ctx = GenerationContext(Request(n=1), seed=0, device="cpu", dtype="float32", modality="text", model_info={})
    ctx.processors.append(MarkerProcessor("!"))
    (output,) = MockFamily().enqueue("hey").generate(Request(n=1), ctx)
    assert output.text == "hey!"
    assert ctx.untaken() == []


def test_mock_family_save_load_keeps_the_queue(tmp_path: Path) -> None:
    path = MockFamily().enqueue("kept").save(tmp_path / "m")
    loaded = MockFamily.load(path)
    assert list(loaded.queue) == ["kept"]
    assert loaded.source_path == path


def test_keyword_policy_flags_prompts_before_generation(tmp_path: Path) -> None:
    model = MockFamily()
    result = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["forbidden"]})]).generate(
        model, n=2, seed=1, prompts=["say something forbidden"]
    )
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    assert model.history == []
    assert [(f.code, f.output_index) for f in result.findings] == [("keyword-in-prompt", None)]


def test_keyword_policy_flags_the_outputs_that_contain_a_word(tmp_path: Path) -> None:
    policy = KeywordPolicy({"words": ["bad", "worse"]})
    result = make_engine(tmp_path, policies=[policy]).generate(
        MockFamily().enqueue("good", "bad and worse", "fine"), n=3, seed=1
    )
    assert result.texts == ["good", "fine"]
    assert sorted((f.output_index, f.message) for f in result.findings) == [
        (1, "output contains 'bad'"),
        (1, "output contains 'worse'"),
    ]


def test_keyword_policy_checks_table_cells() -> None:
    policy = KeywordPolicy({"words": ["secret"]})
    tables = [TableOutput(pd.DataFrame({"a": ["x", "top secret"]})), TableOutput(pd.DataFrame({"a": ["y"]}))]
    findings = policy.inspect_output(tables, None)  # type: ignore[arg-type]
    assert [f.output_index for f in findings] == [0]


def test_recording_policy_sees_every_released_digest(tmp_path: Path) -> None:
    recorder = RecordingPolicy()
    result = make_engine(tmp_path, config={"max_batch_size": 2}, policies=[recorder]).generate(
        MockFamily(), n=3, seed=1
    )
    assert [c[0] for c in recorder.calls] == ["check_request", "inspect_output", "inspect_output"]
    assert recorder.seen_digests() == [o.digest() for o in result.outputs]


def test_noop_and_slow_policies_pass(tmp_path: Path) -> None:
    result = make_engine(tmp_path, policies=[NoopPolicy(), SlowPolicy({"seconds": 0.01})]).generate(
        MockFamily(), n=2, seed=1
    )
    assert result.verdict is Verdict.PASS and len(result.outputs) == 2
    assert next(o for o in result.outcomes if o.policy_id == "slow").elapsed_ms >= 10


def test_make_engine_loads_only_the_testing_plugin(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    assert "gmm" not in engine.host.families
    assert [r.id for r in engine.host.families] == ["mock"]
    assert {i.name for i in engine.host.plugins} == {ESSENTIAL_PLUGIN, "gensdk.testing.plugin"}
    assert {"keyword", "noop", "processor", "raising", "recording", "slow"} <= {r.id for r in engine.host.policies}


def test_make_engine_writes_its_audit_trail_in_the_given_directory(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, audit_name="trail.db")
    engine.generate(MockFamily(), n=1, seed=1)
    engine.close()
    assert (tmp_path / "trail.db").is_file()
