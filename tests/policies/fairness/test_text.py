"""Counterfactual text audits: the shipped prompt set, BOLD, the scorers (and scorers that fail), the
statistics, and an audit of a tiny LM generated through the engine."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gensdk import Finding, Policy, hookimpl
from gensdk.errors import ConfigError, DataError
from gensdk.testing import make_engine
from gensdk_fairness import PromptSet, audit_texts, builtin_prompts, counterfactual_audit, load_bold, resolve_scorers
from gensdk_fairness.prompts import GROUPS, TEMPLATES
from gensdk_fairness.scorers import ScorerError, run_scorer

BOLD = Path(__file__).resolve().parents[4] / "shared" / "data" / "bold"


@pytest.fixture
def scorer_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of third-party scorers: one that works, three that fail in different ways."""
    (tmp_path / "fairness_test_scorers.py").write_text(textwrap.dedent("""
        class Exclaims:
            name = "exclaims"
            def score(self, texts):
                return [t.count("!") for t in texts]

        class Broken:
            name = "broken"
            def score(self, texts):
                raise RuntimeError("model file missing")

        class Short:
            name = "short"
            def score(self, texts):
                return [0.0]

        class NotANumber:
            name = "nan"
            def score(self, texts):
                return [float("nan")] * len(texts)
    """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "fairness_test_scorers"


# -- prompt sets --------------------------------------------------------------------------------------------


def test_builtin_prompts_differ_only_in_the_group() -> None:
    prompts = builtin_prompts()
    assert len(prompts) == len(TEMPLATES) * sum(len(g) for g in GROUPS.values())
    for p in prompts.prompts:
        phrase = GROUPS[p.domain][p.group]
        assert p.prompt.replace(phrase, "{who}", 1) == TEMPLATES[p.template]
    for domain in GROUPS:  # every template filled with every group
        by_template = {}
        for p in prompts.prompts:
            if p.domain == domain:
                by_template.setdefault(p.template, set()).add(p.group)
        assert all(groups == set(GROUPS[domain]) for groups in by_template.values())


def test_prompt_sets_round_trip_and_bad_files_name_the_line(tmp_path: Path) -> None:
    prompts = builtin_prompts(["gender"]).select(per_group=3, seed=1)
    assert len(prompts) == 6
    again = PromptSet.read(prompts.write(tmp_path / "set.jsonl"))
    assert again.prompts == prompts.prompts
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "domain": "d", "group": "g"}\n{"prompt": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: missing or empty \['domain', 'group'\]"):
        PromptSet.read(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="no domain"):
        builtin_prompts(["height"])


@pytest.mark.skipif(not BOLD.is_dir(), reason="BOLD is not in ../shared/data/bold on this machine")
def test_bold_loads_groups_and_samples_per_group() -> None:
    bold = load_bold(BOLD, domains=["gender", "race"], per_group=20, seed=0)
    assert bold.domains == ["gender", "race"]
    assert bold.groups("gender") == ["American_actors", "American_actresses"]
    assert all(sum(1 for p in bold.prompts if (p.domain, p.group) == (d, g)) == 20
               for d in bold.domains for g in bold.groups(d))
    assert all(p.prompt == p.prompt.strip() and p.prompt for p in bold.prompts)
    full = load_bold(BOLD, domains=["religious_ideology"])
    assert len(full.lookup()) == len(full)  # every sentence credited to exactly one group


# -- scorers ------------------------------------------------------------------------------------------------


def test_builtin_scorers() -> None:
    sentiment, toxicity, refusal, length = resolve_scorers(["sentiment", "toxicity", "refusal", "length"])
    scores = run_scorer(sentiment, ["She is a wonderful, kind and brilliant doctor.", "He is a terrible, cruel liar."])
    assert scores[0] > 0.5 and scores[1] < -0.5
    assert list(run_scorer(toxicity, ["They were killed.", "A skillful stupid idiot", "She has great skill", "hello"])) == [1, 1, 0, 0]
    assert list(run_scorer(refusal, ["I'm sorry, but I can't help with that.", "As an AI language model, I",
                                     "Sure, here it is", "He said I can't believe it"])) == [1, 1, 0, 0]
    assert list(run_scorer(length, ["one two  three", ""])) == [3, 0]


def test_scorers_plug_in_by_import_path(scorer_module: str) -> None:
    (scorer,) = resolve_scorers([f"{scorer_module}:Exclaims"])
    assert list(run_scorer(scorer, ["wow!!", "ok"])) == [2, 0]
    with pytest.raises(ConfigError, match="unknown scorer 'vibes'"):
        resolve_scorers(["vibes"])
    with pytest.raises(ConfigError, match="cannot be imported"):
        resolve_scorers(["no_such_module:Scorer"])
    with pytest.raises(ConfigError, match="named twice"):
        resolve_scorers(["length", "length"])


@pytest.mark.parametrize(("name", "message"), [("Broken", "failed: RuntimeError: model file missing"),
                                                ("Short", "returned 1 scores for 2 texts"),
                                                ("NotANumber", "non-finite score")])
def test_a_failing_scorer_raises_a_scorer_error(scorer_module: str, name: str, message: str) -> None:
    (scorer,) = resolve_scorers([f"{scorer_module}:{name}"])
    with pytest.raises(ScorerError, match=message):
        run_scorer(scorer, ["a", "b"])


# -- audits of given texts ----------------------------------------------------------------------------------


def _records(texts_by_group: dict[str, list[str]], domain: str = "gender") -> list[dict]:
    return [{"domain": domain, "group": g, "text": t} for g, texts in texts_by_group.items() for t in texts]


def test_a_one_sided_gap_breaches_and_an_even_one_passes() -> None:
    good, bad = "What a wonderful, brilliant and kind person.", "A cruel, awful and terrible person."
    biased = audit_texts(_records({"woman": [bad] * 35 + [good] * 5, "man": [good] * 35 + [bad] * 5}),
                         scorers=["sentiment"], n_permutations=500)
    fair = audit_texts(_records({"woman": [good, bad] * 20, "man": [bad, good] * 20}), scorers=["sentiment"], n_permutations=500)
    metric = biased.domains["gender"]["metrics"]["sentiment"]
    means = {g: v["mean"] for g, v in metric["by_group"].items()}
    assert metric["disparity"] == pytest.approx(means["man"] - means["woman"]) and metric["p_value"] < 0.01
    assert biased.verdict == "breach" and fair.verdict == "pass"
    assert fair.domains["gender"]["metrics"]["sentiment"]["disparity"] == pytest.approx(0.0, abs=1e-12)


def test_a_failing_scorer_fails_the_audit_closed_and_is_recorded(scorer_module: str) -> None:
    audit = audit_texts(_records({"woman": ["fine"] * 3, "man": ["fine"] * 3}), scorers=["length", f"{scorer_module}:Broken"])
    assert audit.verdict == "error"
    assert audit.errors == [{"scorer": "broken", "error": "scorer 'broken' failed: RuntimeError: model file missing"}]
    assert "length" in audit.domains["gender"]["metrics"]  # the other metrics are still reported
    assert audit.to_dict()["errors"] == audit.errors


def test_a_gap_that_is_not_significant_does_not_breach() -> None:
    one_long = {"woman": ["word " * 60] + ["a"] * 4, "man": ["a"] * 5}  # a gap of 11.8 words from one outlier
    audit = audit_texts(_records(one_long), scorers=["length"], n_permutations=200)
    check = audit.checks[0]
    assert check.value > 10 and check.passed and "not significant" in check.message
    strict = audit_texts(_records(one_long), scorers=["length"], thresholds={"alpha": None})
    assert not strict.checks[0].passed


def test_domains_need_two_groups() -> None:
    with pytest.raises(DataError, match="no domain has two groups"):
        audit_texts(_records({"woman": ["x"] * 5}), scorers=["length"])
    with pytest.raises(DataError, match="lacks"):
        audit_texts([{"domain": "gender", "text": "x"}], scorers=["length"])


# -- generated through the engine ---------------------------------------------------------------------------


class BlockSomeWomen(Policy):
    """Blocks every third completion of a prompt naming a woman: a policy whose blocks differ by group."""

    id = "block-some-women"
    version = "1"

    @hookimpl
    def inspect_output(self, outputs: list[Any], context: Any) -> list[Finding]:
        return [Finding("test-block", "blocked for the test", violation=True, output_index=i)
                for i, o in enumerate(outputs) if "woman" in o.prompt and (context.batch_offset + i) % 3 == 0]


def test_counterfactual_audit_of_a_tiny_lm(tiny_lm: Any, tmp_path: Path, records_of: Any) -> None:
    import gensdk_llm.plugin

    prompts = builtin_prompts(["gender"])
    params = {"max_new_tokens": 10, "temperature": 1.0}
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=[BlockSomeWomen()]) as engine:
        audit = counterfactual_audit(engine, tiny_lm, prompts, scorers=["sentiment", "length"], n=3, params=params,
                                     seed=4, n_boot=200, n_permutations=200)
        # Generate again with the same seeds, outside the audit, and score by hand.
        again = engine.generate(tiny_lm, prompts=list(prompts.lookup()), n=3, seed=4, params=params)
        recorded = records_of(engine, "bias-audit")
        assert engine.audit.verify().ok
    groups = audit.domains["gender"]["groups"]
    assert groups["man"] == {"outputs": 30, "blocked": 0}
    assert groups["woman"]["outputs"] + groups["woman"]["blocked"] == 30 and groups["woman"]["blocked"] > 0
    (length,) = resolve_scorers(["length"])
    by_group: dict[str, list[float]] = {"man": [], "woman": []}
    for output in again.outputs:
        by_group["woman" if "woman" in output.prompt else "man"].append(float(run_scorer(length, [output.text])[0]))
    metric = audit.domains["gender"]["metrics"]["length"]
    for group, values in by_group.items():
        assert metric["by_group"][group]["mean"] == pytest.approx(np.mean(values))
    assert len(recorded) == 1 and recorded[0]["domains"] == json.loads(json.dumps(audit.to_dict()))["domains"]
    assert audit.record["record_id"] == recorded[0]["record_id"]
    assert audit.sources["generation_records"] and audit.sources["model"]["family"] == "llm"
