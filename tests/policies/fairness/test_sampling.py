"""Fairness-aware generation through the engine: the parity gap lands under the target, group shares are kept,
the cost is measured, every row is in the audit trail, and what cannot be done is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm

from gensdk import Policy, hookimpl
from gensdk.errors import OutputBlocked, RequestError
from gensdk.testing import KeywordPolicy, MockFamily, make_engine
from gensdk_fairness import fair_generate


def _gap(frame: pd.DataFrame, columns: list[str]) -> float:
    y = (frame["income"] == ">50K").astype(int).to_numpy()
    return fm.demographic_parity_difference(y, y, sensitive_features=frame[columns])


@pytest.mark.parametrize("method", ["conditional", "resample"])
def test_gap_is_brought_under_the_target(engine: Any, gmm: Any, adult: pd.DataFrame, method: str, records_of: Any) -> None:
    sample = fair_generate(engine, gmm, 3000, sensitive="sex", target="income", positive=">50K", max_difference=0.02,
                           reference=adult, method=method, seed=3)
    assert len(sample.frame) == 3000 and sample.method == method
    assert sample.before["dp_difference"] > 0.1  # the model keeps Adult's income gap ...
    assert _gap(sample.frame, ["sex"]) == pytest.approx(sample.after["dp_difference"], abs=1e-12)
    assert sample.after["dp_difference"] <= 0.02 and sample.met  # ... and the fair sample closes it
    for group, before in sample.before["groups"].items():  # group shares are kept, to the row
        assert abs(sample.after["groups"][group]["share"] - before["share"]) <= 1 / 3000
    cost = sample.quality["cost"]
    assert set(cost) == {"marginal_tvd", "association_distance"} and all(np.isfinite(v) for v in cost.values())
    summary = records_of(engine, "fairness-sampling")
    assert len(summary) == 1 and summary[0]["generation_records"] == sample.record_ids
    generated = {r["body"]["record_id"] for r in engine.audit.records() if r["body"]["kind"] == "generation"}
    assert set(sample.record_ids) == generated
    assert engine.audit.verify().ok


def test_a_loose_target_changes_less(engine: Any, gmm: Any) -> None:
    tight = fair_generate(engine, gmm, 2000, sensitive="sex", target="income", positive=">50K", max_difference=0.01, seed=1)
    loose = fair_generate(engine, gmm, 2000, sensitive="sex", target="income", positive=">50K", max_difference=0.1, seed=1)
    assert tight.after["dp_difference"] <= 0.01 < loose.after["dp_difference"] <= 0.1
    moved = lambda s: sum(abs(g["rate_planned"] - g["rate_before"]) * g["rows"] for g in s.plan["groups"].values())  # noqa: E731
    assert moved(loose) < moved(tight)  # the least change that meets each target


def test_intersectional_groups(engine: Any, gmm: Any) -> None:
    sample = fair_generate(engine, gmm, 4000, sensitive=["sex", "relationship"], target="income", positive=">50K",
                           max_difference=0.25, seed=2)
    assert sample.met and sample.after["dp_difference"] < sample.before["dp_difference"]
    assert _gap(sample.frame, ["sex", "relationship"]) <= 0.25


def test_neural_table_family(tmp_path: Any, tiny_gan: Any) -> None:
    import gensdk_gan.plugin

    with make_engine(tmp_path, plugins=[gensdk_gan.plugin]) as engine:
        sample = fair_generate(engine, tiny_gan, 1000, sensitive="sex", target="income", positive=">50K", max_difference=0.05)
    assert sample.met and sample.method == "conditional" and len(sample.frame) == 1000


def test_groups_too_small_for_the_target_are_refused(engine: Any, gmm: Any) -> None:
    with pytest.raises(RequestError, match=r"would get \d+ of 200 rows.*ask for at least \d+ rows"):
        fair_generate(engine, gmm, 200, sensitive=["sex", "race"], target="income", positive=">50K", max_difference=0.01)


def test_a_blocking_policy_stops_the_sampling(tmp_path: Any, plugins: list[Any], gmm: Any) -> None:
    with make_engine(tmp_path, plugins=plugins, policies=[KeywordPolicy({"words": ["Female"]})]) as engine:
        with pytest.raises(OutputBlocked, match="keyword"):
            fair_generate(engine, gmm, 500, sensitive="sex", target="income", positive=">50K", max_difference=0.05)


def test_only_table_models_can_be_sampled_fairly(engine: Any) -> None:
    with pytest.raises(RequestError, match="needs a table model"):
        fair_generate(engine, MockFamily(), 10, sensitive="sex", target="income", positive=">50K")


class DropFirstRow(Policy):
    """Removes the first row of every table, as the memorisation policy removes rows it cannot replace."""

    id = "drop-first-row"
    version = "1"

    @hookimpl
    def transform_output(self, outputs: list[Any], context: Any) -> None:
        for output in outputs:
            output.frame = output.frame.iloc[1:].reset_index(drop=True)


def test_cells_short_of_rows_are_topped_up(tmp_path: Any, plugins: list[Any], gmm: Any) -> None:
    with make_engine(tmp_path, plugins=plugins, policies=[DropFirstRow()]) as engine:
        sample = fair_generate(engine, gmm, 1000, sensitive="sex", target="income", positive=">50K", max_difference=0.05)
    assert len(sample.frame) == 1000 and sample.met
    assert len(sample.record_ids) == 1 + 2 * 4  # the plain sample, then each of the 4 cells twice


def test_a_cell_the_model_rarely_makes_is_filled_from_target_conditioned_rows(tmp_path: Any, plugins: list[Any], gmm: Any) -> None:
    """Like a GAN's rejection sampler running out of rounds for (Female, >50K) when asked for many rows."""
    from gensdk.errors import GenerationError

    class Reluctant(type(gmm)):
        def _generate(self, request: Any, params: Any, context: Any) -> Any:
            if request.n > 250 and request.conditions.get("sex") == "Female":
                raise GenerationError(f"the model produced only 10 of {request.n} rows with sex='Female'")
            return super()._generate(request, params, context)

    model = Reluctant(gmm.options)
    model.schema, model.params, model.reference = gmm.schema, gmm.params, gmm.reference
    with make_engine(tmp_path, plugins=plugins) as engine:
        sample = fair_generate(engine, model, 3000, sensitive="sex", target="income", positive=">50K", max_difference=0.02)
        failed = [r["body"] for r in engine.audit.records() if r["body"].get("error")]
    assert sample.met and len(sample.frame) == 3000
    assert failed and all("sex='Female'" in body["error"] for body in failed)  # the refused requests are recorded
    assert (sample.frame["sex"] == "Female").sum() == sample.plan["groups"]["Female"]["rows"]


def test_quality_distances_are_zero_for_the_same_table_and_grow_with_change(adult: pd.DataFrame) -> None:
    from gensdk_fairness.quality import quality_distances

    same = quality_distances(adult, adult.copy())
    assert same["marginal_tvd"] == 0.0 and same["association_distance"] == 0.0
    shuffled = adult.copy()
    shuffled["income"] = shuffled["income"].sample(frac=1, random_state=0).to_numpy()  # same marginal, no dependence
    moved = quality_distances(adult, shuffled)
    assert moved["marginal_tvd"] == 0.0 and moved["association_distance"] > 0.01
    holes = adult.copy()
    holes.loc[::2, "age"] = np.nan
    assert quality_distances(adult, holes)["per_column_tvd"]["age"] == pytest.approx(0.5, abs=0.01)
