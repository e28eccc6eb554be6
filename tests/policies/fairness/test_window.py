"""The windowed policies in the engine: every N units audited, the result a chained record in the audit
trail, a violation when a threshold is breached, and fail-closed behaviour when the policy cannot audit."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm

from gensdk import Verdict
from gensdk.testing import MockFamily, make_engine
from gensdk_fairness import ImageWindowPolicy, TableWindowPolicy, TextWindowPolicy
from gensdk_fairness.window import reference_frame

SEX_INCOME = {"sensitive": ["sex"], "target": "income", "positive": ">50K", "bootstrap": 100}


def _outcome(result: Any, policy_id: str) -> Any:
    return next(o for o in result.outcomes if o.policy_id == policy_id)


def _engine(tmp_path: Path, plugins: list[Any], *policies: Any) -> Any:
    return make_engine(tmp_path, plugins=plugins, policies=list(policies))


# -- tables -------------------------------------------------------------------------------------------------


def test_every_window_of_rows_is_audited_and_recorded(tmp_path: Path, plugins: list[Any], gmm: Any, records_of: Any) -> None:
    policy = TableWindowPolicy({**SEX_INCOME, "window": 1000}, {"on_fail": "warn"})
    with _engine(tmp_path, plugins, policy) as engine:
        first = engine.generate(gmm, n=1000, seed=1)
        second = engine.generate(gmm, n=1500, seed=2)
        windows = records_of(engine, "bias-window")
        assert engine.audit.verify().ok
    assert [w["window"] for w in windows] == [1, 2] and all(w["units"] == 1000 for w in windows)
    rows = pd.concat([first.table(), second.table()], ignore_index=True)
    for number, window in enumerate(windows):
        chunk = rows.iloc[number * 1000 : (number + 1) * 1000]
        y = (chunk["income"] == ">50K").astype(int)
        expected = fm.demographic_parity_difference(y, y, sensitive_features=chunk["sex"])
        assert window["audit"]["parity"]["synthetic"]["dp_difference"] == pytest.approx(expected, abs=1e-9)
        assert window["audit"]["rows"]["real"] == 1800  # the model's training rows (its memorisation reference)
    findings = [f for r in (first, second) for f in _outcome(r, "fairness-table").findings]
    assert [f.details["window"] for f in findings] == [1, 2]
    assert [f.details["record_id"] for f in findings] == [w["record_id"] for w in windows]


def test_equalized_odds_of_window_rows_is_measured_when_asked(tmp_path: Path, plugins: list[Any], gmm: Any,
                                                              records_of: Any) -> None:
    """With max_equalized_odds_increase the window keeps every column and its audit is audit_tables' own on
    (training rows, window rows), classifiers included; without it no classifier is trained."""
    from gensdk_fairness import audit_tables
    from gensdk_fairness.window import reference_columns

    options = {**SEX_INCOME, "window": 600, "max_equalized_odds_increase": 0.3}
    with _engine(tmp_path, plugins, TableWindowPolicy(options, {"on_fail": "warn"})) as engine:
        window_rows = engine.generate(gmm, n=600, seed=3).table()
        (window,) = records_of(engine, "bias-window")
    eo = window["audit"]["equalized_odds"]
    real = reference_frame(gmm, reference_columns(gmm))
    expected = audit_tables(real, window_rows[real.columns], sensitive=["sex"], target="income", positive=">50K",
                            n_boot=100, seed=0).equalized_odds
    assert eo["train_rows"] == {"real": expected["train_rows"]["real"], "synthetic": 600}
    assert eo["eo_increase"] == pytest.approx(expected["eo_increase"], abs=1e-9)
    assert eo["eo_increase"] == pytest.approx(eo["synthetic"]["eo_difference"] - eo["real"]["eo_difference"])
    (check,) = [c for c in window["audit"]["checks"] if c["name"] == "equalized_odds_increase"]
    assert check["threshold"] == 0.3 and check["value"] == pytest.approx(eo["eo_increase"])
    with _engine(tmp_path / "plain", plugins, TableWindowPolicy({**SEX_INCOME, "window": 600})) as engine:
        engine.generate(gmm, n=600, seed=3)
        (plain,) = records_of(engine, "bias-window")
    assert plain["audit"]["equalized_odds"] is None


def test_the_training_rows_are_decoded_exactly_from_the_reference(gmm: Any) -> None:
    reference = gmm.training_reference()
    decoded = reference_frame(gmm, reference.schema.names)
    assert len(decoded) == len(reference.training)
    assert np.allclose(reference.encode(decoded), reference.training, atol=1e-5)


@pytest.mark.parametrize(("on_fail", "verdict"), [("block", Verdict.BLOCK), ("warn", Verdict.WARN)])
def test_a_breached_window_is_a_violation(tmp_path: Path, plugins: list[Any], gmm: Any, on_fail: str, verdict: Verdict) -> None:
    policy = TableWindowPolicy({**SEX_INCOME, "window": 500, "max_parity_difference": 0.01}, {"on_fail": on_fail})
    with _engine(tmp_path, plugins, policy) as engine:
        result = engine.generate(gmm, n=500, seed=3)
    (finding,) = _outcome(result, "fairness-table").findings
    assert finding.violation and "parity_difference" in finding.details["breached"]
    assert "exceeds the limit 0.01" in finding.message
    assert result.verdict is verdict and bool(result.outputs) == (on_fail == "warn")


def test_rows_the_request_conditioned_on_are_left_out(tmp_path: Path, plugins: list[Any], gmm: Any, records_of: Any) -> None:
    policy = TableWindowPolicy({**SEX_INCOME, "window": 800})
    with _engine(tmp_path, plugins, policy) as engine:
        engine.generate(gmm, n=600, seed=1, conditions={"sex": "Female"})
        assert records_of(engine, "bias-window") == []
        engine.generate(gmm, n=800, seed=2, conditions={"relationship": "Husband"})
        (window,) = records_of(engine, "bias-window")
    assert window["skipped_units"] == 600 and window["units"] == 800


def test_nothing_to_audit_fails_closed_or_is_recorded_as_unchecked(tmp_path: Path, plugins: list[Any], gmm: Any) -> None:
    with _engine(tmp_path, plugins, TableWindowPolicy({"window": 100})) as engine:
        blocked = engine.generate(gmm, n=50, seed=1)
    outcome = _outcome(blocked, "fairness-table")
    assert blocked.verdict is Verdict.BLOCK and not blocked.outputs
    assert outcome.status == "error" and "no sensitive columns configured" in outcome.error
    with _engine(tmp_path / "skip", plugins, TableWindowPolicy({"window": 100, "missing_attributes": "skip"})) as engine:
        skipped = engine.generate(gmm, n=50, seed=1)
    assert skipped.verdict is Verdict.PASS
    assert [f.code for f in _outcome(skipped, "fairness-table").findings] == ["bias-window-unchecked"]


def test_declared_roles_of_the_model_are_used(tmp_path: Path, tiny_gan: Any, records_of: Any) -> None:
    import gensdk_gan.plugin

    policy = TableWindowPolicy({"positive": ">50K", "window": 300, "bootstrap": 100}, {"on_fail": "warn"})
    with make_engine(tmp_path, plugins=[gensdk_gan.plugin], policies=[policy]) as engine:
        engine.generate(tiny_gan, n=300, seed=1)
        (window,) = records_of(engine, "bias-window")
    assert window["audit"]["sensitive"] == ["sex", "race"] and window["audit"]["target"] == "income"


def test_a_gmm_declares_roles_too_and_keeps_them_when_saved(tmp_path: Path, plugins: list[Any], adult: Any,
                                                            records_of: Any) -> None:
    from gensdk_gmm import GMMFamily

    options = {"n_components": 2, "max_iter": 5, "sensitive": ["sex"], "target": "income"}
    saved = GMMFamily(options).fit(adult).save(tmp_path / "gmm")
    policy = TableWindowPolicy({"positive": ">50K", "window": 300, "bootstrap": 100}, {"on_fail": "warn"})
    with _engine(tmp_path, plugins, policy) as engine:
        engine.generate(GMMFamily.load(saved), n=300, seed=1)
        (window,) = records_of(engine, "bias-window")
    assert window["audit"]["sensitive"] == ["sex"] and window["audit"]["target"] == "income"


def test_a_model_without_training_reference_is_judged_on_the_window_alone(tmp_path: Path, plugins: list[Any], adult: Any,
                                                                          records_of: Any) -> None:
    from gensdk_gmm import GMMFamily

    bare = GMMFamily({"n_components": 2, "max_iter": 5, "holdout_fraction": 0.0}).fit(adult.iloc[:400])
    policy = TableWindowPolicy({**SEX_INCOME, "window": 400, "max_parity_difference": 0.9}, {"on_fail": "warn"})
    with _engine(tmp_path, plugins, policy) as engine:
        result = engine.generate(bare, n=400, seed=1)
        (window,) = records_of(engine, "bias-window")
    assert result.verdict is Verdict.PASS and window["audit"]["kind"] == "table-window"
    assert [c["name"] for c in window["audit"]["checks"]] == ["parity_difference"]
    assert any("kept no training reference" in n for n in window["audit"]["notes"])


# -- text ---------------------------------------------------------------------------------------------------


GOOD = "a wonderful, brilliant and kind engineer"
BAD = "a cruel, awful and terrible liar"


def _texts(engine: Any, prompt: str, text: str, n: int, seed: int) -> Any:
    return engine.generate(MockFamily().enqueue(*[text] * n), prompts=[prompt], n=n, seed=seed)


def test_text_window_finds_a_sentiment_gap_between_groups(tmp_path: Path, records_of: Any) -> None:
    policy = TextWindowPolicy({"window": 40, "scorers": ["sentiment", "length"], "bootstrap": 100, "permutations": 200},
                              {"on_fail": "warn"})
    with make_engine(tmp_path, policies=[policy]) as engine:
        _texts(engine, "ROMEO:", GOOD, 8, seed=0)  # names no group: not counted
        _texts(engine, "The woman worked as a", BAD, 20, seed=1)
        result = _texts(engine, "My friend, a man from Ohio, said", GOOD, 20, seed=2)  # group found by its word
        (window,) = records_of(engine, "bias-window")
    assert window["skipped_units"] == 8
    gender = window["audit"]["domains"]["gender"]
    assert gender["groups"] == {"man": {"outputs": 20, "blocked": 0}, "woman": {"outputs": 20, "blocked": 0}}
    assert gender["metrics"]["sentiment"]["p_value"] < 0.01
    (finding,) = _outcome(result, "fairness-text").findings
    assert finding.violation and finding.details["breached"] == ["gender/sentiment"] and result.verdict is Verdict.WARN


def test_a_failing_scorer_blocks_and_the_window_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records_of: Any) -> None:
    (tmp_path / "window_scorers.py").write_text(textwrap.dedent("""
        class Broken:
            name = "broken"
            def score(self, texts):
                raise RuntimeError("classifier weights missing")
    """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    policy = TextWindowPolicy({"window": 10, "scorers": ["length", "window_scorers:Broken"], "bootstrap": 100, "permutations": 100})
    with make_engine(tmp_path, policies=[policy]) as engine:
        _texts(engine, "The woman worked as a", GOOD, 5, seed=1)
        result = _texts(engine, "The man worked as a", GOOD, 5, seed=2)
        (window,) = records_of(engine, "bias-window")
    assert window["verdict"] == "error" and "classifier weights missing" in window["audit"]["errors"][0]["error"]
    outcome = _outcome(result, "fairness-text")
    assert result.verdict is Verdict.BLOCK and outcome.status == "error" and "ScorerError" in outcome.error


def test_a_window_with_one_group_is_recorded_without_a_verdict_against_it(tmp_path: Path, records_of: Any) -> None:
    policy = TextWindowPolicy({"window": 6, "scorers": ["length"]})
    with make_engine(tmp_path, policies=[policy]) as engine:
        result = _texts(engine, "The woman worked as a", GOOD, 6, seed=1)
        (window,) = records_of(engine, "bias-window")
    assert result.verdict is Verdict.PASS and "nothing to compare" in window["audit"]["notes"][0]


# -- images -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shares", "violation"), [({3: 1.0}, True), ({c: 0.1 for c in range(10)}, False)])
def test_image_window_compares_digit_shares_with_the_target(tmp_path: Path, digit_family: Any, shares: dict, violation: bool,
                                                            records_of: Any) -> None:
    policy = ImageWindowPolicy({"classifier": "digits", "window": 200, "max_tvd": 0.15, "bootstrap": 100}, {"on_fail": "warn"})
    model = digit_family(shares)
    with make_engine(tmp_path, policies=[policy]) as engine:
        engine.generate(model, n=50, seed=0, conditions={"class": "7"})  # asked for: left out
        result = engine.generate(model, n=200, seed=1)
        (window,) = records_of(engine, "bias-window")
        assert engine.audit.verify().ok
    (finding,) = _outcome(result, "fairness-image").findings
    assert finding.violation is violation and window["skipped_units"] == 50
    assert sum(v["count"] for v in window["audit"]["by_class"].values()) == 200


def test_image_window_without_a_classifier_fails_closed(tmp_path: Path, digit_family: Any) -> None:
    with make_engine(tmp_path, policies=[ImageWindowPolicy({"window": 10})]) as engine:
        result = engine.generate(digit_family({1: 1.0}), n=4, seed=0)
    assert result.verdict is Verdict.BLOCK and "no attribute classifier" in _outcome(result, "fairness-image").error


def test_a_streamed_completion_is_one_unit_with_its_final_text(tmp_path: Path, tiny_lm: Any, records_of: Any) -> None:
    """Engine.stream checks the growing text many times with one context: it must count once, as its final text."""
    import gensdk_llm.plugin

    policy = TextWindowPolicy({"window": 2, "scorers": ["length"], "bootstrap": 100, "permutations": 100})
    params = {"max_new_tokens": 40, "temperature": 1.0}
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=[policy]) as engine:
        texts = ["".join(engine.stream(tiny_lm, prompts=[prompt], seed=3, params=params, lookback=4))
                 for prompt in ("The woman worked as a", "The man worked as a")]
        (window,) = records_of(engine, "bias-window")
    gender = window["audit"]["domains"]["gender"]
    assert window["units"] == 2 and gender["groups"]["woman"]["outputs"] == 1 and gender["groups"]["man"]["outputs"] == 1
    # The first stream had finished when the window closed (at the second stream's first check): its final text.
    assert gender["metrics"]["length"]["by_group"]["woman"]["mean"] == len(texts[0].split())


def test_checks_marked_partial_are_not_counted(tmp_path: Path) -> None:
    from gensdk.outputs import TextOutput
    from gensdk.request import GenerationContext, Request

    policy = TextWindowPolicy({"window": 2, "scorers": ["length"]})
    context = GenerationContext(Request(prompts=["The woman worked as a"]), 0, "cpu", "float32", "text", {},
                                record_event=lambda kind, body: {"record_id": "r", "hash": "h"})
    context.state["partial"] = True
    assert policy.inspect_output([TextOutput("a nurse", prompt="The woman worked as a")], context) == []
    assert policy._buffers == {}
