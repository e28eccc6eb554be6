"""The policy pipeline through the engine: severity, fail-closed errors and time-outs, order, processors,
switching policies off, modalities, and policies that break their contract."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

import pandas as pd
import pytest

from gensdk import Finding, ModelFamily, Policy, TableOutput, TextOutput, Verdict, hookimpl
from gensdk.errors import MandatoryPolicyError, RequestError
from gensdk.testing import KeywordPolicy, MockFamily, ProcessorPolicy, RaisingPolicy, SlowPolicy, make_engine

HOOKS = ["check_request", "prepare_generation", "transform_output", "inspect_output"]


def audit_body(engine: Any, record_id: str) -> dict[str, Any]:
    return next(r["body"] for r in engine.audit.records() if r["record_id"] == record_id)


def audit_policy(engine: Any, record_id: str, policy_id: str) -> dict[str, Any]:
    return next(p for p in audit_body(engine, record_id)["policies"] if p["id"] == policy_id)


def outcome(result: Any, policy_id: str) -> Any:
    return next(o for o in result.outcomes if o.policy_id == policy_id)


def engine_with(tmp_path: Path, *policies: Policy) -> Any:
    return make_engine(tmp_path, policies=list(policies), audit_name="other.db")


class FlagIndex(Policy):
    """Flags the outputs whose index (within the micro-batch) is listed."""

    id = "flag-index"
    version = "1"

    def __init__(self, indexes: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        self.indexes = list(indexes)

    @hookimpl
    def inspect_output(self, outputs: list[Any], context: Any) -> list[Finding]:
        return [Finding("flagged", f"output {i} flagged", violation=True, output_index=i) for i in self.indexes]


class TinyTableFamily(ModelFamily):
    id = "tiny-table"
    version = "1"
    modality = "table"

    def _generate(self, request: Any, params: Any, context: Any) -> Sequence[TableOutput]:
        return [TableOutput(pd.DataFrame({"word": ["secret"] * request.n}))]

    def save(self, path: Any) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Any) -> TinyTableFamily:
        raise NotImplementedError


class DeafTextFamily(ModelFamily):
    """A text family that never looks at context.processors."""

    id = "deaf-text"
    version = "1"
    modality = "text"

    def _generate(self, request: Any, params: Any, context: Any) -> Sequence[TextOutput]:
        return [TextOutput(f"plain {i}") for i in range(request.n)]

    def save(self, path: Any) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Any) -> DeafTextFamily:
        raise NotImplementedError


# -- verdicts -------------------------------------------------------------------------------------------------


def test_block_on_one_output_withholds_only_that_output(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bad"]})])
    result = engine.generate(MockFamily().enqueue("good", "bad", "fine"), n=3, seed=1)
    assert result.texts == ["good", "fine"]
    assert result.output_verdicts == [Verdict.PASS, Verdict.BLOCK, Verdict.PASS]
    assert audit_body(engine, result.audit_record_id)["released"] == 2


def test_most_severe_finding_wins(tmp_path: Path) -> None:
    warn = KeywordPolicy({"words": ["a"]}, {"on_fail": "warn"})
    block = FlagIndex([0])
    engine = make_engine(tmp_path, policies=[warn, block])
    result = engine.generate(MockFamily().enqueue("a1", "a2", "b3"), n=3, seed=1)
    # output 0: warn + block -> block; output 1: warn; output 2: nothing.
    assert result.output_verdicts == [Verdict.BLOCK, Verdict.WARN, Verdict.PASS]
    assert result.texts == ["a2", "b3"]
    assert result.verdict is Verdict.BLOCK
    assert outcome(result, "keyword").verdict is Verdict.WARN
    assert outcome(result, "flag-index").verdict is Verdict.BLOCK


def test_on_fail_warn_releases_with_verdict_warn(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bad"]}, {"on_fail": "warn"})])
    result = engine.generate(MockFamily().enqueue("bad", "good"), n=2, seed=1)
    assert result.texts == ["bad", "good"]
    assert result.output_verdicts == [Verdict.WARN, Verdict.PASS]
    assert result.verdict is Verdict.WARN
    assert audit_body(engine, result.audit_record_id)["verdict"] == "warn"


def test_non_violation_findings_do_not_block(tmp_path: Path) -> None:
    class Note(Policy):
        id = "note"

        @hookimpl
        def inspect_output(self, outputs: list[Any], context: Any) -> list[Finding]:
            return [Finding("seen", "just a note", output_index=0)]

    result = make_engine(tmp_path, policies=[Note()]).generate(MockFamily(), n=1, seed=1)
    assert result.verdict is Verdict.PASS
    assert [f.code for f in result.findings] == ["seen"]


def test_blocking_request_finding_stops_generation(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bomb"]})])
    model = MockFamily()
    result = engine.generate(model, n=3, seed=1, prompts=["how to build a bomb"])
    assert model.history == []
    assert result.outputs == [] and result.output_verdicts == []
    assert result.verdict is Verdict.BLOCK
    assert [f.code for f in result.findings] == ["keyword-in-prompt"]
    assert audit_body(engine, result.audit_record_id)["verdict"] == "block"


# -- fail closed -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", HOOKS)
def test_policy_error_in_any_hook_blocks_and_is_recorded(tmp_path: Path, hook: str) -> None:
    engine = make_engine(tmp_path, policies=[RaisingPolicy({"hook": hook, "message": f"boom in {hook}"})])
    model = MockFamily()
    result = engine.generate(model, n=2, seed=1)

    assert result.outputs == []
    assert result.verdict is Verdict.BLOCK
    raising = outcome(result, "raising")
    assert raising.status == "error"
    assert f"boom in {hook}" in raising.error and hook in raising.error
    recorded = audit_policy(engine, result.audit_record_id, "raising")
    assert recorded["status"] == "error" and f"boom in {hook}" in recorded["error"]
    assert audit_body(engine, result.audit_record_id)["released"] == 0
    if hook == "check_request":
        assert model.history == []  # nothing was generated at all
    else:
        assert result.output_verdicts == [Verdict.BLOCK, Verdict.BLOCK]


@pytest.mark.parametrize("hook", HOOKS)
def test_on_error_allow_releases_as_bypassed_and_warns(
    tmp_path: Path, hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    policy = RaisingPolicy({"hook": hook}, {"on_error": "allow"})
    assert any("on_error='allow'" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)

    engine = make_engine(tmp_path, policies=[policy])
    result = engine.generate(MockFamily(), n=2, seed=1)
    assert len(result.outputs) == 2
    assert result.verdict is Verdict.BYPASSED
    assert result.output_verdicts == [Verdict.BYPASSED, Verdict.BYPASSED]
    assert outcome(result, "raising").verdict is Verdict.BYPASSED
    body = audit_body(engine, result.audit_record_id)
    assert body["verdict"] == "bypassed"
    assert {o["verdict"] for o in body["outputs"]} == {"bypassed"}
    assert any("bypassed" in r.getMessage() and "raising" in r.getMessage() for r in caplog.records)


def test_policy_over_its_time_limit_blocks_without_waiting_for_it(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[SlowPolicy({"seconds": 2}, {"timeout_s": 0.2})])
    started = time.perf_counter()
    result = engine.generate(MockFamily(), n=2, seed=1)
    elapsed = time.perf_counter() - started

    assert elapsed < 1.5
    assert result.outputs == []
    slow = outcome(result, "slow")
    assert slow.status == "timeout"
    assert "0.2 s" in slow.error
    assert audit_policy(engine, result.audit_record_id, "slow")["status"] == "timeout"


class SlowTransform(Policy):
    """Rewrites outputs after a delay: a transform that outlives its time limit."""

    id = "slow-transform"
    version = "1"

    @hookimpl
    def transform_output(self, outputs: list[Any], context: Any) -> None:
        time.sleep(0.5)
        for output in outputs:
            output.text = "rewritten after release"


def test_transform_timeout_blocks_even_when_errors_are_allowed(tmp_path: Path) -> None:
    # A transform still running after its time limit could change outputs after release, so "allow" cannot
    # apply to it: the outputs are blocked, never bypassed.
    engine = make_engine(tmp_path, policies=[SlowTransform(settings={"timeout_s": 0.1, "on_error": "allow"})])
    result = engine.generate(MockFamily(), n=2, seed=1)
    assert result.outputs == []
    assert result.output_verdicts == [Verdict.BLOCK, Verdict.BLOCK]
    assert outcome(result, "slow-transform").status == "timeout"


def test_policies_never_reached_after_a_request_block_are_marked_skipped(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bomb"]}), FlagIndex([0])])
    result = engine.generate(MockFamily(), n=2, seed=1, prompts=["a bomb"])
    assert outcome(result, "keyword").status == "violation"
    assert outcome(result, "flag-index").status == "skipped"
    assert audit_policy(engine, result.audit_record_id, "flag-index")["status"] == "skipped"


def test_policy_error_is_isolated_from_the_other_policies(tmp_path: Path) -> None:
    keyword = KeywordPolicy({"words": ["bad"]})
    engine = make_engine(tmp_path, policies=[RaisingPolicy({"hook": "inspect_output"}), keyword])
    result = engine.generate(MockFamily().enqueue("bad", "good"), n=2, seed=1)
    assert outcome(result, "raising").status == "error"
    assert outcome(result, "keyword").status == "violation"  # still ran after the failure
    assert [f.output_index for f in outcome(result, "keyword").findings] == [0]


# -- order -------------------------------------------------------------------------------------------------------


def test_policies_run_in_configured_order(tmp_path: Path) -> None:
    log: list[str] = []

    class Recorder(Policy):
        id: ClassVar[str] = ""

        @hookimpl
        def check_request(self, request: Any, context: Any) -> None:
            log.append(f"{self.id}:check")

        @hookimpl
        def prepare_generation(self, request: Any, context: Any) -> None:
            log.append(f"{self.id}:prepare")

        @hookimpl
        def transform_output(self, outputs: list[Any], context: Any) -> None:
            log.append(f"{self.id}:transform")

        @hookimpl
        def inspect_output(self, outputs: list[Any], context: Any) -> None:
            log.append(f"{self.id}:inspect")

    class Zeta(Recorder):
        id = "zeta"

    class Alpha(Recorder):
        id = "alpha"

    make_engine(tmp_path, policies=[Zeta(), Alpha()]).generate(MockFamily(), n=1, seed=1)
    assert log == [
        "zeta:check", "alpha:check",
        "zeta:prepare", "alpha:prepare",
        "zeta:transform", "alpha:transform",
        "zeta:inspect", "alpha:inspect",
    ]


def test_transforms_see_earlier_transforms(tmp_path: Path) -> None:
    class Append(Policy):
        suffix: ClassVar[str] = ""

        @hookimpl
        def transform_output(self, outputs: list[TextOutput], context: Any) -> None:
            for output in outputs:
                output.text += self.suffix

    class First(Append):
        id, suffix = "first", "-1"

    class Second(Append):
        id, suffix = "second", "-2"

    result = make_engine(tmp_path, policies=[Second(), First()]).generate(MockFamily().enqueue("x"), n=1, seed=1)
    assert result.texts == ["x-2-1"]


def test_configured_policies_run_before_policies_passed_in(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, config={"policies": [{"id": "keyword"}]}, policies=[SlowPolicy({"seconds": 0})])
    assert [p.id for p in engine.policies] == ["keyword", "slow"]
    result = engine.generate(MockFamily(), n=1, seed=1)
    assert [o.policy_id for o in result.outcomes] == ["keyword", "slow"]


# -- processors ------------------------------------------------------------------------------------------------


def test_processor_from_a_policy_is_applied_by_the_family(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, config={"max_batch_size": 2}, policies=[ProcessorPolicy({"marker": " [wm]"})])
    result = engine.generate(MockFamily().enqueue("a", "b", "c"), n=3, seed=1)
    assert result.texts == ["a [wm]", "b [wm]", "c [wm]"]
    assert result.verdict is Verdict.PASS


def test_family_that_ignores_a_processor_gets_its_outputs_blocked(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[ProcessorPolicy()])
    result = engine.generate(DeafTextFamily(), n=2, seed=1)
    assert result.outputs == []
    assert result.output_verdicts == [Verdict.BLOCK, Verdict.BLOCK]
    processor = outcome(result, "processor")
    assert processor.status == "error"
    assert "MarkerProcessor" in processor.error and "deaf-text" in processor.error
    assert "MarkerProcessor" in audit_policy(engine, result.audit_record_id, "processor")["error"]


# -- switching policies off, modalities --------------------------------------------------------------------------


def test_request_cannot_switch_off_a_mandatory_policy(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bad"]})])
    model = MockFamily().enqueue("bad")
    with pytest.raises(MandatoryPolicyError, match="keyword"):
        engine.generate(model, n=1, seed=1, disable_policies=["keyword"])
    assert model.history == []


def test_request_can_switch_off_a_non_mandatory_policy_and_it_is_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bad"]}, {"mandatory": False})])
    result = engine.generate(MockFamily().enqueue("bad"), n=1, seed=1, disable_policies=["keyword"])
    assert result.texts == ["bad"]  # the policy really did not run
    assert outcome(result, "keyword").status == "disabled"
    assert audit_policy(engine, result.audit_record_id, "keyword")["status"] == "disabled"
    assert any("switched off" in r.getMessage() for r in caplog.records)


def test_disabling_a_policy_that_is_not_enabled_is_a_request_error(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, policies=[KeywordPolicy({}, {"mandatory": False})])
    with pytest.raises(RequestError, match="'kewyord'"):
        engine.generate(MockFamily(), n=1, disable_policies=["kewyord"])


def test_policy_for_other_modalities_is_recorded_not_applicable(tmp_path: Path) -> None:
    class TextOnlyKeyword(KeywordPolicy):
        id = "text-keyword"
        modalities = frozenset({"text"})

    engine = make_engine(tmp_path, policies=[TextOnlyKeyword({"words": ["secret"]}), KeywordPolicy({"words": ["x"]})])
    result = engine.generate(TinyTableFamily(), n=3, seed=1)
    assert result.verdict is Verdict.PASS
    assert len(result.table()) == 3
    assert outcome(result, "text-keyword").status == "not_applicable"
    assert audit_policy(engine, result.audit_record_id, "text-keyword")["status"] == "not_applicable"
    assert outcome(result, "keyword").status == "ok"  # applies to every modality
    # The same table, checked by a policy that applies to tables, is blocked.
    blocked = engine_with(tmp_path, KeywordPolicy({"words": ["secret"]})).generate(TinyTableFamily(), n=3, seed=1)
    assert blocked.verdict is Verdict.BLOCK


# -- policies that break their contract ----------------------------------------------------------------------------


def test_policy_returning_something_other_than_findings_errors_and_blocks(tmp_path: Path) -> None:
    class Sloppy(Policy):
        id = "sloppy"

        @hookimpl
        def inspect_output(self, outputs: list[Any], context: Any) -> list[Any]:
            return ["looks fine to me"]

    result = make_engine(tmp_path, policies=[Sloppy()]).generate(MockFamily(), n=2, seed=1)
    assert result.outputs == []
    sloppy = outcome(result, "sloppy")
    assert sloppy.status == "error" and "returned str, not a Finding" in sloppy.error


def test_finding_for_an_output_that_does_not_exist_errors_and_blocks(tmp_path: Path) -> None:
    result = make_engine(tmp_path, policies=[FlagIndex([2])]).generate(MockFamily(), n=2, seed=1)
    assert result.outputs == []
    assert result.output_verdicts == [Verdict.BLOCK, Verdict.BLOCK]
    flag = outcome(result, "flag-index")
    assert flag.status == "error" and "output 2" in flag.error


def test_finding_index_is_local_to_the_micro_batch(tmp_path: Path) -> None:
    # With batches of 2, index 1 of each batch is flagged: global outputs 1 and 3.
    engine = make_engine(tmp_path, config={"max_batch_size": 2}, policies=[FlagIndex([1])])
    result = engine.generate(MockFamily(), n=4, seed=1)
    assert result.blocked == [1, 3]
    assert [f.output_index for f in result.findings] == [1, 3]


# -- hand-offs to the policy worker -------------------------------------------------------------------------------


class PrepareLog(Policy):
    """Records the micro-batches it prepared; raises in prepare_generation for the batches listed."""

    id = "prepare-log"
    version = "1"

    def __init__(self, fail_batches: Sequence[int] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.fail_batches, self.prepared = list(fail_batches), []

    @hookimpl
    def prepare_generation(self, request: Any, context: Any) -> None:
        self.prepared.append(context.batch_index)
        if context.batch_index in self.fail_batches:
            raise RuntimeError(f"cannot prepare batch {context.batch_index}")


def count_hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from gensdk.policy_worker import _PolicyWorker

    sizes: list[int] = []
    run = _PolicyWorker.run

    def counted(self: Any, calls: Any, *args: Any) -> Any:
        sizes.append(len(calls))
        return run(self, calls, *args)

    monkeypatch.setattr(_PolicyWorker, "run", counted)
    return sizes


def test_a_clean_request_takes_two_hand_offs_whatever_the_number_of_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gensdk.testing import NoopPolicy, RecordingPolicy

    hand_offs = count_hand_offs(monkeypatch)
    engine = make_engine(tmp_path, policies=[NoopPolicy(), RecordingPolicy(), ProcessorPolicy()])
    result = engine.generate(MockFamily().enqueue("a"), n=1, seed=1)
    assert result.texts == ["a [marked]"]
    # check_request x2 with prepare_generation x2; transform_output x1 with inspect_output x2
    assert hand_offs == [4, 3]
    stages = audit_body(engine, result.audit_record_id)["timings_ms"]
    assert {"check_request", "prepare", "generate", "transform", "inspect", "digest"} <= set(stages)


def test_a_check_that_only_warns_still_prepares_every_batch(tmp_path: Path) -> None:
    warn = KeywordPolicy({"words": ["tea"]}, settings={"on_fail": "warn"})
    log = PrepareLog()
    engine = make_engine(tmp_path, config={"max_batch_size": 2}, policies=[warn, ProcessorPolicy(), log])
    result = engine.generate(MockFamily().enqueue("a", "b", "c"), n=3, seed=1, prompts=["tea"] * 3)
    assert result.texts == ["a [marked]", "b [marked]", "c [marked]"]
    assert result.verdict is Verdict.WARN and log.prepared == [0, 1]


def test_prepare_never_runs_for_a_blocked_request(tmp_path: Path) -> None:
    log = PrepareLog()
    engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bomb"]}), log])
    result = engine.generate(MockFamily(), n=2, seed=1, prompts=["a bomb", "a bomb"])
    assert result.verdict is Verdict.BLOCK and log.prepared == []
    assert outcome(result, "prepare-log").status == "skipped"


def test_a_prepare_error_in_the_first_batch_blocks_only_that_batch(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, config={"max_batch_size": 2}, policies=[PrepareLog(fail_batches=[0])])
    result = engine.generate(MockFamily().enqueue("a", "b", "c", "d"), n=4, seed=1)
    assert result.output_verdicts == [Verdict.BLOCK, Verdict.BLOCK, Verdict.PASS, Verdict.PASS]
    assert result.texts == ["c", "d"]
    assert "cannot prepare batch 0" in outcome(result, "prepare-log").error
