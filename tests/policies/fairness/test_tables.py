"""Real vs synthetic tables: every figure against fairlearn, verdicts on data with a known amplification, and
typed errors for bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm

from gensdk.errors import ConfigError, DataError
from gensdk_fairness import audit_tables
from gensdk_fairness.tables import default_classifier

TOLERANCE = 1e-9


def _income(frame: pd.DataFrame) -> np.ndarray:
    return (frame["income"] == ">50K").astype(int).to_numpy()


def _dp(frame: pd.DataFrame, columns: list[str]) -> float:
    y = _income(frame)
    return fm.demographic_parity_difference(y, y, sensitive_features=frame[columns])


@pytest.fixture(scope="module")
def synthetic(gmm: Any, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    import gensdk_gmm.plugin
    from gensdk.testing import make_engine

    with make_engine(tmp_path_factory.mktemp("syn"), plugins=[gensdk_gmm.plugin]) as engine:
        return engine.generate(gmm, n=2000, seed=11).table()


def test_figures_agree_with_fairlearn(adult: pd.DataFrame, synthetic: pd.DataFrame) -> None:
    audit = audit_tables(adult, synthetic, sensitive=["sex"], target="income", positive=">50K", n_boot=200).to_dict()
    parity = audit["parity"]
    assert abs(parity["real"]["dp_difference"] - _dp(adult, ["sex"])) <= TOLERANCE
    assert abs(parity["synthetic"]["dp_difference"] - _dp(synthetic, ["sex"])) <= TOLERANCE
    y = _income(synthetic)
    assert abs(parity["synthetic"]["dp_ratio"] - fm.demographic_parity_ratio(y, y, sensitive_features=synthetic["sex"])) <= TOLERANCE
    assert parity["amplification"] == pytest.approx(parity["synthetic"]["dp_difference"] - parity["real"]["dp_difference"], abs=TOLERANCE)
    rates = fm.MetricFrame(metrics=fm.selection_rate, y_true=y, y_pred=y, sensitive_features=synthetic["sex"]).by_group
    for group, rate in rates.items():
        assert abs(audit["selection_rates"]["synthetic"][group]["selection_rate"] - rate) <= TOLERANCE
    shares = synthetic["sex"].value_counts(normalize=True)
    for group, share in shares.items():
        assert audit["representation"]["by_group"][group]["synthetic_share"] == pytest.approx(share, abs=TOLERANCE)


def test_equalized_odds_of_both_classifiers_agree_with_fairlearn(adult: pd.DataFrame, synthetic: pd.DataFrame) -> None:
    """Reproduce the documented procedure (seeded stratified split, the default classifier) and let fairlearn
    judge the same predictions."""
    from sklearn.model_selection import train_test_split

    from gensdk_fairness.tables import _feature_frames

    audit = audit_tables(adult, synthetic, sensitive="sex", target="income", positive=">50K", n_boot=200, seed=5).to_dict()
    eo = audit["equalized_odds"]
    features = [c for c in adult.columns if c != "income"]
    x_real, x_syn = _feature_frames(adult[features], synthetic[features])
    y_real, y_syn = _income(adult), _income(synthetic)
    train, test = train_test_split(np.arange(len(adult)), test_size=0.3, random_state=5, stratify=y_real)
    for which, (x, y) in {"real": (x_real.iloc[train], y_real[train]), "synthetic": (x_syn, y_syn)}.items():
        pred = default_classifier(seed=5).fit(x, y).predict(x_real.iloc[test])
        expected = fm.equalized_odds_difference(y_real[test], pred, sensitive_features=adult["sex"].iloc[test])
        assert abs(eo[which]["eo_difference"] - expected) <= TOLERANCE, which
        assert eo[which]["accuracy"] == pytest.approx((pred == y_real[test]).mean())
    assert eo["eo_increase"] == pytest.approx(eo["synthetic"]["eo_difference"] - eo["real"]["eo_difference"])
    assert eo["test_rows"] == len(test) and eo["classifier"] == "LogisticRegression"


def _amplified(real: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    """A copy of the real rows where `share` of the women earning >50K are relabelled <=50K."""
    fake = real.copy()
    women_rich = np.flatnonzero((fake["sex"] == "Female") & (fake["income"] == ">50K"))
    flipped = np.random.default_rng(seed).choice(women_rich, int(share * len(women_rich)), replace=False)
    fake.loc[flipped, "income"] = "<=50K"
    return fake


def test_a_known_amplification_is_measured_and_breaches(adult: pd.DataFrame) -> None:
    fake = _amplified(adult, 0.8)
    expected = _dp(fake, ["sex"]) - _dp(adult, ["sex"])
    audit = audit_tables(adult, fake, sensitive="sex", target="income", positive=">50K", classifier=None, n_boot=300)
    assert audit.parity["amplification"] == pytest.approx(expected, abs=TOLERANCE)
    assert expected > 0.05 and audit.verdict == "breach"
    check = next(c for c in audit.checks if c.name == "parity_amplification")
    assert not check.passed and check.ci[0] > 0  # the interval excludes no amplification
    assert "exceeds the limit 0.05" in check.message


def test_an_identical_table_preserves_the_gap(adult: pd.DataFrame) -> None:
    audit = audit_tables(adult, adult.copy(), sensitive=["sex", "race"], target="income", positive=">50K",
                         classifier=None, n_boot=200, thresholds={"max_parity_difference": 0.5})
    assert audit.parity["amplification"] == 0.0 and audit.representation["max_abs_shift"] == 0.0
    assert audit.verdict == "pass" and {c.name for c in audit.checks} == {
        "representation_shift", "parity_amplification", "parity_difference"}


def test_thresholds_are_configurable(adult: pd.DataFrame) -> None:
    fake = _amplified(adult, 0.3)
    gap = _dp(fake, ["sex"]) - _dp(adult, ["sex"])
    loose = audit_tables(adult, fake, sensitive="sex", target="income", positive=">50K", classifier=None,
                         thresholds={"max_parity_amplification": gap + 0.01}, n_boot=100)
    strict = audit_tables(adult, fake, sensitive="sex", target="income", positive=">50K", classifier=None,
                          thresholds={"max_parity_amplification": gap - 0.01}, n_boot=100)
    assert loose.verdict == "pass" and strict.verdict == "breach"
    ratio = audit_tables(adult, fake, sensitive="sex", target="income", positive=">50K", classifier=None,
                         thresholds={"min_parity_ratio": 0.8, "max_parity_amplification": None}, n_boot=100)
    assert [c.name for c in ratio.checks] == ["representation_shift", "parity_ratio"] and ratio.verdict == "breach"


def test_an_erased_group_is_named_and_fails_the_parity_check(adult: pd.DataFrame) -> None:
    men_only = adult[adult["sex"] == "Male"].reset_index(drop=True)
    audit = audit_tables(adult, men_only, sensitive="sex", target="income", positive=">50K", classifier=None, n_boot=100)
    assert any("'Female'" in n and "erased" in n for n in audit.notes)
    assert any("one group only" in n for n in audit.notes)
    parity = next(c for c in audit.checks if c.name == "parity_amplification")
    assert not parity.passed and parity.value is None and audit.verdict == "breach"


def test_small_groups_are_reported_without_intervals(adult: pd.DataFrame, synthetic: pd.DataFrame) -> None:
    audit = audit_tables(adult, synthetic, sensitive=["race"], target="income", positive=">50K", classifier=None, n_boot=100)
    tiny = [g for g, v in audit.representation["by_group"].items() if v["real_count"] < 30]
    assert tiny  # Adult has races with fewer than 30 of these 2,000 rows
    assert all(audit.selection_rates["real"][g]["ci"] is None for g in tiny if g in audit.selection_rates["real"])
    assert audit.parity["real"]["dp_difference_ci"] is None
    assert any("fewer than 30 rows" in n for n in audit.notes)


def test_bad_input_is_a_typed_error_naming_it(adult: pd.DataFrame) -> None:
    kwargs = dict(target="income", positive=">50K", classifier=None, n_boot=50)
    with pytest.raises(DataError, match=r"sensitive column\(s\) \['gender'\] are not in the real table"):
        audit_tables(adult, adult, sensitive="gender", **kwargs)
    with pytest.raises(DataError, match="target column 'salary'"):
        audit_tables(adult, adult, sensitive="sex", target="salary", positive=">50K")
    with pytest.raises(DataError, match="distinct values.*binary"):
        audit_tables(adult, adult, sensitive="sex", target="race", positive="White")
    with pytest.raises(DataError, match="one group only"):
        only_men = adult[adult["sex"] == "Male"]
        audit_tables(only_men, adult, sensitive="sex", **kwargs)
    with pytest.raises(ConfigError, match="max_gap"):
        audit_tables(adult, adult, sensitive="sex", thresholds={"max_gap": 0.1}, **kwargs)
    holes = adult.copy()
    holes.loc[3, "sex"] = None
    with pytest.raises(DataError, match="missing cells"):
        audit_tables(adult, holes, sensitive="sex", **kwargs)


def test_missing_numbers_in_the_synthetic_rows_are_imputed_for_the_classifier(adult: pd.DataFrame) -> None:
    holes = adult.copy()
    holes.loc[::7, "age"] = np.nan  # a VAE generates missing cells at the training rate
    audit = audit_tables(adult, holes, sensitive="sex", target="income", positive=">50K", n_boot=50)
    assert audit.equalized_odds["synthetic"]["accuracy"] > 0.7
