"""The one-bincount group metrics against fairlearn itself: every figure to 1e-9, edge cases included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm
from hypothesis import given, settings
from hypothesis import strategies as st

from gensdk.errors import DataError
from gensdk_fairness import (
    demographic_parity_difference,
    demographic_parity_ratio,
    encode_groups,
    equalized_odds_difference,
    equalized_odds_ratio,
    group_metrics,
)

TOLERANCE = 1e-9


def _data(seed: int, n: int = 1500, two_columns: bool = False) -> tuple[np.ndarray, np.ndarray, Any]:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Female", "Male"], n, p=[0.35, 0.65])
    race = rng.choice(["Black", "Other", "White"], n, p=[0.1, 0.02, 0.88])
    y_true = (rng.random(n) < np.where(sex == "Male", 0.3, 0.12)).astype(int)
    y_pred = (rng.random(n) < 0.25 + 0.4 * y_true - 0.1 * (sex == "Female")).astype(int)
    sensitive = pd.DataFrame({"sex": sex, "race": race}) if two_columns else pd.Series(sex, name="sex")
    return y_true, y_pred, sensitive


@pytest.mark.parametrize(("two_columns", "method", "weighted"), [
    (False, "between_groups", False), (True, "between_groups", True), (False, "to_overall", True), (True, "to_overall", False)])
def test_disparities_equal_fairlearn(two_columns: bool, method: str, weighted: bool) -> None:
    y_true, y_pred, sensitive = _data(seed=1, two_columns=two_columns)
    weights = np.random.default_rng(2).uniform(0.2, 3.0, len(y_true)) if weighted else None
    common = {"sensitive_features": sensitive, "method": method, "sample_weight": weights}
    pairs = [
        (demographic_parity_difference, fm.demographic_parity_difference),
        (demographic_parity_ratio, fm.demographic_parity_ratio),
        (equalized_odds_difference, fm.equalized_odds_difference),
        (equalized_odds_ratio, fm.equalized_odds_ratio),
    ]
    for ours, theirs in pairs:
        assert abs(ours(y_true, y_pred, **common) - theirs(y_true, y_pred, **common)) <= TOLERANCE, ours.__name__
    for agg in ("worst_case", "mean"):
        ours_eo = equalized_odds_difference(y_true, y_pred, agg=agg, **common)
        assert abs(ours_eo - fm.equalized_odds_difference(y_true, y_pred, agg=agg, **common)) <= TOLERANCE


@pytest.mark.parametrize("two_columns", [False, True])
def test_per_group_rates_equal_metricframe(two_columns: bool) -> None:
    y_true, y_pred, sensitive = _data(seed=3, two_columns=two_columns)
    frame = fm.MetricFrame(metrics={"selection_rate": fm.selection_rate, "true_positive_rate": fm.true_positive_rate,
                                    "false_positive_rate": fm.false_positive_rate, "count": fm.count},
                           y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    ours = group_metrics(y_true, y_pred, sensitive)
    assert len(ours.groups.labels) == len(frame.by_group)
    for g, label in enumerate(ours.groups.labels):
        expected = frame.by_group.loc[label]
        for metric in ("selection_rate", "true_positive_rate", "false_positive_rate", "count"):
            assert abs(ours.rates[metric][g] - expected[metric]) <= TOLERANCE, (label, metric)
    for metric in ("selection_rate", "true_positive_rate", "false_positive_rate"):
        assert abs(ours.rates[metric + "_overall"] - frame.overall[metric]) <= TOLERANCE


def test_a_group_without_positives_has_tpr_zero_as_in_fairlearn() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    y_pred = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    groups = np.array(["a", "a", "a", "b", "b", "b", "b", "c"])  # "a" and "c" have no positives
    ours = group_metrics(y_true, y_pred, groups)
    assert ours.by_group()["a"]["true_positive_rate"] == 0.0
    for ours_fn, theirs in ((equalized_odds_difference, fm.equalized_odds_difference),
                            (equalized_odds_ratio, fm.equalized_odds_ratio)):
        assert abs(ours_fn(y_true, y_pred, sensitive_features=groups) - theirs(y_true, y_pred, sensitive_features=groups)) <= TOLERANCE


def test_ratio_with_no_selection_is_nan_like_fairlearn() -> None:
    y = np.zeros(6, dtype=int)
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    assert np.isnan(fm.demographic_parity_ratio(y, y, sensitive_features=groups))
    assert np.isnan(demographic_parity_ratio(y, y, sensitive_features=groups))


def test_uci_adult_income_gap_by_sex_and_race_equals_fairlearn(adult: Any) -> None:
    y = (adult["income"] == ">50K").astype(int).to_numpy()
    for sensitive in (adult["sex"], adult[["sex", "race"]]):
        ours = group_metrics(adult["income"], adult["income"], sensitive, positive=">50K")
        theirs = fm.demographic_parity_difference(y, y, sensitive_features=sensitive)
        assert abs(ours.demographic_parity_difference - theirs) <= TOLERANCE
        assert ours.demographic_parity_difference > 0.1  # Adult's known income gap


def test_categorical_groups_skip_unused_categories_like_fairlearn() -> None:
    y_true, y_pred, sex = _data(seed=4)
    categorical = pd.Series(pd.Categorical(sex, categories=["Male", "Unused", "Female"]), name="sex")
    groups = encode_groups(categorical)
    assert groups.labels == ["Female", "Male"]
    assert abs(demographic_parity_ratio(y_true, y_pred, sensitive_features=categorical)
               - fm.demographic_parity_ratio(y_true, y_pred, sensitive_features=sex)) <= TOLERANCE


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from("abc")), min_size=4, max_size=60),
       st.sampled_from(["between_groups", "to_overall"]))
def test_any_small_dataset_equals_fairlearn(rows: list[tuple[int, int, str]], method: str) -> None:
    y_true, y_pred, groups = (np.array(col) for col in zip(*rows))
    common = {"sensitive_features": groups, "method": method}
    for ours, theirs in ((demographic_parity_difference, fm.demographic_parity_difference),
                         (equalized_odds_difference, fm.equalized_odds_difference)):
        assert abs(ours(y_true, y_pred, **common) - theirs(y_true, y_pred, **common)) <= TOLERANCE


def test_one_group_only_is_a_data_error_naming_it() -> None:
    with pytest.raises(DataError, match=r"one group.*'Male'"):
        group_metrics([1, 0, 1], [1, 0, 0], pd.Series(["Male"] * 3, name="sex"))


def test_non_binary_target_is_refused() -> None:
    with pytest.raises(DataError, match="3 distinct values.*binary"):
        group_metrics([0, 1, 2], [0, 1, 1], ["a", "b", "a"])


def test_text_labels_need_the_positive_value() -> None:
    with pytest.raises(DataError, match="positive"):
        group_metrics(["<=50K", ">50K"], ["<=50K", ">50K"], ["a", "b"])
    with pytest.raises(DataError, match="no value 'yes'"):
        group_metrics(["<=50K", ">50K"], ["<=50K", ">50K"], ["a", "b"], positive="yes")


def test_missing_sensitive_values_and_length_mismatch_are_refused() -> None:
    with pytest.raises(DataError, match="missing values"):
        group_metrics([1, 0], [1, 0], pd.Series(["a", None], name="sex"))
    with pytest.raises(DataError, match="3 sensitive values but 2"):
        group_metrics([1, 0], [1, 0], ["a", "b", "a"])


def test_many_categories_do_not_overflow_small_codes() -> None:
    """pandas stores the codes of a categorical with < 128 categories as int8; the cell index (codes * 4 + ...)
    and the combinations (60 x 3) must still be computed in 64 bits."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.integers(0, 60, 4000).astype(str), "b": rng.integers(0, 3, 4000).astype(str)})
    y_true, y_pred = rng.integers(0, 2, 4000), rng.integers(0, 2, 4000)
    single = frame[["a"]].astype("category")
    ours = equalized_odds_difference(y_true, y_pred, sensitive_features=single)
    assert abs(ours - fm.equalized_odds_difference(y_true, y_pred, sensitive_features=frame["a"])) <= TOLERANCE
    combined = equalized_odds_difference(y_true, y_pred, sensitive_features=frame.astype("category"))
    joined = equalized_odds_difference(y_true, y_pred, sensitive_features=frame["a"] + "|" + frame["b"])
    assert combined == joined


def test_many_columns_with_many_values_number_only_the_combinations_that_occur() -> None:
    """200 x 200 x 100 combinations are too many to list: the groups are the 2,000-odd that occur."""
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({c: rng.integers(0, k, 2000).astype(str) for c, k in (("a", 200), ("b", 200), ("c", 100))})
    y_true, y_pred = rng.integers(0, 2, 2000), rng.integers(0, 2, 2000)
    groups = encode_groups(frame)
    assert len(groups.lattice) == groups.count == len(frame.drop_duplicates())
    joined = frame["a"] + "|" + frame["b"] + "|" + frame["c"]
    for fn in (demographic_parity_difference, equalized_odds_ratio):
        assert fn(y_true, y_pred, sensitive_features=frame) == fn(y_true, y_pred, sensitive_features=joined)


def test_long_string_columns_encoded_in_parallel_equal_fairlearn() -> None:
    """Past PARALLEL_ROWS the columns are factorised in threads; the groups and rates must not change."""
    from gensdk_fairness.groups import PARALLEL_ROWS

    y_true, y_pred, sensitive = _data(seed=5, n=PARALLEL_ROWS + 1, two_columns=True)
    sensitive["race"] = sensitive["race"].astype(object)  # one Arrow-backed and one object column
    ours = group_metrics(y_true, y_pred, sensitive)
    frame = fm.MetricFrame(metrics={"selection_rate": fm.selection_rate}, y_true=y_true, y_pred=y_pred,
                           sensitive_features=sensitive)
    assert ours.groups.labels == list(frame.by_group.index)
    assert np.abs(ours.rates["selection_rate"] - frame.by_group["selection_rate"].to_numpy()).max() <= TOLERANCE
    assert abs(ours.equalized_odds_difference
               - fm.equalized_odds_difference(y_true, y_pred, sensitive_features=sensitive)) <= TOLERANCE
