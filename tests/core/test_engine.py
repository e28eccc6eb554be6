"""Engine behaviour a user notices: what a Result carries, what the audit trail holds, seeds, micro-batches,
model loading, and the start-up errors that keep an engine from running in an unsafe shape."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

import gensdk
from gensdk import Finding, Policy, TextOutput, Verdict, hookimpl
from gensdk.audit import open_audit_sink
from gensdk.errors import AuditError, GenerationError, ModelLoadError, OutputBlocked, PluginError, RequestError
from gensdk.testing import KeywordPolicy, MockFamily, NoopPolicy, RecordingPolicy, make_engine


def audit_body(engine: gensdk.Engine, record_id: str) -> dict[str, Any]:
    for record in engine.audit.records():
        if record["record_id"] == record_id:
            return record["body"]
    raise AssertionError(f"no audit record {record_id}")


def outcome(result: gensdk.Result, policy_id: str) -> gensdk.PolicyOutcome:
    return next(o for o in result.outcomes if o.policy_id == policy_id)


class BrokenFamily(MockFamily):
    id = "broken"

    def _generate(self, request: Any, params: Any, context: Any) -> Any:
        self.history.append(request)
        raise RuntimeError("CUDA out of memory (simulated)")


# -- the result and its audit record ----------------------------------------------------------------------


def test_result_carries_outputs_verdicts_outcomes_and_record_id(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["secret"]})])
    result = engine.generate(MockFamily().enqueue("hello", "a secret", "world"), n=3, seed=1)

    assert result.texts == ["hello", "world"]
    assert result.output_verdicts == [Verdict.PASS, Verdict.BLOCK, Verdict.PASS]
    assert result.blocked == [1]
    assert result.verdict is Verdict.BLOCK
    keyword = outcome(result, "keyword")
    assert keyword.status == "violation"
    assert [(f.code, f.output_index, f.policy_id) for f in keyword.findings] == [("keyword", 1, "keyword")]
    assert result.audit_record_id and len(result.audit_hash) == 64
    assert result.model["family"] == "mock"


def test_audit_record_is_committed_before_generate_returns(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[NoopPolicy()])
    result = engine.generate(MockFamily().enqueue("one", "two"), n=2, seed=5)

    # A second, independent connection sees the record: it was committed, not just buffered.
    with open_audit_sink(str(tmp_path / "audit.db"), create=False) as other:
        bodies = {r["record_id"]: r for r in other.records()}
    assert result.audit_record_id in bodies
    record = bodies[result.audit_record_id]
    assert record["hash"] == result.audit_hash
    body = record["body"]
    assert body["verdict"] == "pass"
    assert body["seed"] == 5
    assert body["released"] == 2
    assert [o["digest"] for o in body["outputs"]] == [o.digest() for o in result.outputs]
    assert [p["id"] for p in body["policies"]] == ["noop"]
    assert body["policies"][0]["config_digest"] == NoopPolicy().config_digest


def test_released_outputs_are_stamped_with_their_audit_record(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    result = engine.generate(MockFamily(), n=2, seed=1)
    for output in result.outputs:
        assert output.metadata["audit_record_id"] == result.audit_record_id
        assert output.metadata["digest"] == output.digest()


def test_audit_record_holds_hashes_not_content(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    result = engine.generate(MockFamily().enqueue("my very private sentence"), n=1, seed=1, prompts=["a prompt"])
    raw = (tmp_path / "audit.db").read_bytes()
    assert b"my very private sentence" not in raw
    assert b"a prompt" not in raw
    assert audit_body(engine, result.audit_record_id)["outputs"][0]["digest"] == result.outputs[0].digest()


def test_audit_trail_of_many_generations_verifies(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["x"]})])
    ids = [engine.generate(MockFamily(), n=2, seed=s).audit_record_id for s in range(5)]
    report = engine.audit.verify()
    assert report.ok, report.problem
    assert report.records == 5
    assert [r["record_id"] for r in engine.audit.records()] == ids


def test_transformed_outputs_are_what_is_released_and_hashed(tmp_path: Path) -> None:
    class Redact(Policy):
        id = "redact"
        version = "1"

        @hookimpl
        def transform_output(self, outputs: list[TextOutput], context: Any) -> list[Finding]:
            findings = []
            for i, output in enumerate(outputs):
                if "555-0100" in output.text:
                    output.text = output.text.replace("555-0100", "[phone]")
                    findings.append(Finding("redacted", "phone number redacted", output_index=i))
            return findings

    engine = make_engine(tmp_path, policies=[Redact(), KeywordPolicy({"words": ["555-0100"]})])
    result = engine.generate(MockFamily().enqueue("call 555-0100 now"), n=1, seed=1)

    assert result.texts == ["call [phone] now"]
    assert result.verdict is Verdict.PASS  # the keyword policy inspects the redacted text
    assert [f.code for f in result.findings] == ["redacted"]
    body = audit_body(engine, result.audit_record_id)
    assert body["outputs"][0]["digest"] == TextOutput("call [phone] now").digest()


# -- seeds and micro-batches --------------------------------------------------------------------------------


def test_same_seed_gives_same_outputs_and_another_seed_differs(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    model = MockFamily()
    first = engine.generate(model, n=4, seed=42).texts
    again = engine.generate(model, n=4, seed=42).texts
    other = engine.generate(model, n=4, seed=43).texts
    assert first == again
    assert first != other


def test_request_without_seed_gets_a_random_seed_recorded(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    results = [engine.generate(MockFamily(), n=1) for _ in range(2)]
    for result in results:
        assert isinstance(result.seed, int) and 0 <= result.seed < 2**63
        assert audit_body(engine, result.audit_record_id)["seed"] == result.seed
    assert results[0].seed != results[1].seed
    # The recorded seed reproduces the outputs.
    assert engine.generate(MockFamily(), n=1, seed=results[0].seed).texts == results[0].texts


def test_large_request_is_split_into_micro_batches_with_global_output_indexes(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, config={"max_batch_size": 3}, policies=[KeywordPolicy({"words": ["bad"]})])
    texts = ["t0", "t1", "t2", "t3", "t4", "bad5", "t6", "bad7"]
    model = MockFamily().enqueue(*texts)
    result = engine.generate(model, n=8, seed=1)

    assert [r.n for r in model.history] == [3, 3, 2]
    assert len(result.output_verdicts) == 8
    assert [f.output_index for f in result.findings] == [5, 7]
    assert result.blocked == [5, 7]
    assert result.texts == ["t0", "t1", "t2", "t3", "t4", "t6"]
    body = audit_body(engine, result.audit_record_id)
    assert [o["index"] for o in body["outputs"]] == list(range(8))
    assert [o["verdict"] for o in body["outputs"]].count("block") == 2


def test_micro_batches_get_distinct_seeds(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, config={"max_batch_size": 2})
    texts = engine.generate(MockFamily(), n=4, seed=9).texts
    assert len(set(texts)) == 4


def test_family_default_batch_size_applies_without_configuration(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    model = MockFamily()
    engine.generate(model, n=MockFamily.default_batch_size + 1, seed=1)
    assert [r.n for r in model.history] == [MockFamily.default_batch_size, 1]


# -- generation errors and raise_for_verdict ----------------------------------------------------------------


def test_family_failure_is_a_generation_error_with_an_audit_record(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[NoopPolicy()])
    with pytest.raises(GenerationError, match="CUDA out of memory") as info:
        engine.generate(BrokenFamily(), n=2, seed=1)
    assert "broken" in str(info.value)

    records = list(engine.audit.records())
    assert len(records) == 1
    body = records[0]["body"]
    assert "RuntimeError" in body["error"]
    assert body["verdict"] == "block"
    assert body["released"] == 0
    assert engine.audit.verify().ok


def test_invalid_request_is_a_request_error_before_anything_runs(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    model = MockFamily()
    with pytest.raises(RequestError, match="n"):
        engine.generate(model, n=0)
    with pytest.raises(RequestError, match="no_such_field"):
        engine.generate(model, {"n": 1, "no_such_field": 1})
    with pytest.raises(RequestError, match="params"):
        engine.generate(model, n=1, params={"temperature": 2})
    assert model.history == []


@pytest.mark.parametrize("bad_n", [True, "5", 3.0])
def test_request_counts_are_not_coerced(tmp_path: Path, bad_n: Any) -> None:
    with pytest.raises(RequestError, match="n:"):
        make_engine(tmp_path).generate(MockFamily(), n=bad_n)


def test_raise_for_verdict_names_the_blocking_policy(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[NoopPolicy(), KeywordPolicy({"words": ["secret"]})])
    result = engine.generate(MockFamily().enqueue("secret", "fine"), n=2, seed=1)
    with pytest.raises(OutputBlocked, match="keyword") as info:
        result.raise_for_verdict()
    assert "noop" not in str(info.value)
    assert "1 of 2 outputs blocked" in str(info.value)
    assert result.audit_record_id in str(info.value)
    assert info.value.result is result


def test_raise_for_verdict_returns_the_result_when_nothing_is_blocked(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["x"]}, {"on_fail": "warn"})])
    passing = engine.generate(MockFamily().enqueue("fine"), n=1, seed=1)
    assert passing.verdict is Verdict.PASS
    assert passing.raise_for_verdict() is passing
    warned = engine.generate(MockFamily().enqueue("x"), n=1, seed=1)
    assert warned.verdict is Verdict.WARN
    assert warned.raise_for_verdict() is warned


# -- models --------------------------------------------------------------------------------------------------


def test_model_directory_loads_through_its_family_once(tmp_path: Path) -> None:
    saved = MockFamily().enqueue("from disk").save(tmp_path / "model")
    engine = make_engine(tmp_path)
    loaded = engine.load_model(saved)
    assert isinstance(loaded, MockFamily)
    assert engine.load_model(str(saved)) is loaded  # cached on the engine
    result = engine.generate(saved, n=1, seed=1)
    assert result.texts == ["from disk"]
    assert result.model["path"] == str(saved)


def test_missing_model_directory_is_a_model_load_error(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        engine.generate(tmp_path / "nowhere", n=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="recognises"):
        engine.load_model(tmp_path / "empty")


# -- start-up refusals -----------------------------------------------------------------------------------------


def test_pipeline_hook_outside_a_policy_is_refused_at_construction(tmp_path: Path) -> None:
    rogue = types.ModuleType("rogue_plugin")
    rogue.inspect_output = hookimpl(lambda outputs, context: None)  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="rogue_plugin.*inspect_output"):
        make_engine(tmp_path, plugins=[rogue])


def test_same_policy_enabled_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="'keyword' is enabled twice"):
        make_engine(tmp_path, policies=[KeywordPolicy(), KeywordPolicy({"words": ["a"]})])
    with pytest.raises(PluginError, match="enabled twice"):
        make_engine(tmp_path, config={"policies": [{"id": "keyword"}]}, policies=[KeywordPolicy()])


def test_non_policy_object_in_policies_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="not a gensdk.Policy"):
        make_engine(tmp_path, policies=[object()])  # type: ignore[list-item]


def test_closed_engine_refuses_to_write_audit_records(tmp_path: Path) -> None:
    with make_engine(tmp_path) as engine:
        engine.generate(MockFamily(), n=1, seed=1)
    with pytest.raises(AuditError, match="closed"):
        engine.generate(MockFamily(), n=1, seed=1)


def test_policy_lookup_by_id(tmp_path: Path) -> None:
    recorder = RecordingPolicy()
    engine = make_engine(tmp_path, policies=[recorder])
    assert engine.policy("recording") is recorder
    with pytest.raises(gensdk.PluginError, match="not enabled"):
        engine.policy("keyword")


def test_record_event_appends_a_chained_record_that_verifies(tmp_path):
    from gensdk.audit import open_audit_sink

    audit = tmp_path / "audit.db"
    with make_engine(tmp_path) as engine:
        engine.generate(MockFamily(), n=1, seed=1)
        receipt = engine.record_event("bias-window", {"window": 1, "parity_difference": 0.12})
        with pytest.raises(ValueError, match="kind other than 'generation'"):
            engine.record_event("generation", {})
    with open_audit_sink(str(audit)) as sink:
        records = list(sink.records())
        assert sink.verify().ok
    assert [r["body"]["kind"] for r in records] == ["generation", "bias-window"]
    assert records[1]["body"]["parity_difference"] == 0.12
    assert records[1]["record_id"] == receipt["record_id"]


def test_policies_can_record_events_through_the_context(tmp_path):
    seen = []

    class Windowed(RecordingPolicy):
        id = "windowed"

        @hookimpl
        def inspect_output(self, outputs, context):
            seen.append(context.record_event("window", {"n": len(outputs)}))

    with make_engine(tmp_path, policies=[Windowed()]) as engine:
        engine.generate(MockFamily(), n=2, seed=1)
    assert seen and seen[0]["seq"] == 1
