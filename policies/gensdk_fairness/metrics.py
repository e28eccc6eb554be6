"""Group fairness metrics with fairlearn's definitions, computed from one pass over the rows.

Every metric fairlearn's `MetricFrame` gives for a binary classifier (selection rate, true and false positive
rate, per group and overall) depends on the rows only through the weighted counts of each (group, true label,
predicted label) cell. Those counts come from a single `np.bincount`, so a million rows take milliseconds
where `MetricFrame` (a pandas groupby calling scikit-learn per group and metric) takes seconds. The
definitions, including the edge cases, are fairlearn's:

* selection rate = P(pred = 1 | group); demographic parity difference = max - min over groups
  (``method="between_groups"``) or the largest |group - overall| (``"to_overall"``); ratio = min / max, or the
  smallest group/overall ratio taken below one;
* true / false positive rate as scikit-learn's row-normalised confusion matrix: 0 for a group with no
  positives (negatives), not NaN;
* equalized odds difference = max (``agg="worst_case"``) or mean of the TPR and FPR differences; ratio = min or
  mean of the two ratios.

`tests/policies/fairness/test_metrics.py` checks each against fairlearn itself to 1e-9.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from gensdk.errors import DataError
from gensdk_fairness._deps import require
from gensdk_fairness.groups import Groups, binarize, encode_lattice

__all__ = [
    "GroupMetrics",
    "cell_counts",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "fairlearn_metrics",
    "group_metrics",
    "rates_from_cells",
]

Method = Literal["between_groups", "to_overall"]
Agg = Literal["worst_case", "mean"]


def cell_counts(groups: Groups, y_true: np.ndarray, y_pred: np.ndarray, sample_weight: Any = None) -> np.ndarray:
    """(G, 2, 2) weighted counts: cells[g, t, p] = weight of rows of group g with true label t, prediction p."""
    if not len(groups.codes) == len(y_true) == len(y_pred):
        raise DataError(f"{len(groups.codes)} sensitive values but {len(y_true)} true labels and {len(y_pred)} predictions")
    key = groups.codes * 4 + y_true.astype(np.int64) * 2 + y_pred
    weights = None if sample_weight is None else _weights(sample_weight, len(key))
    counts = np.bincount(key, weights=weights, minlength=groups.count * 4)
    return counts.astype(np.float64).reshape(groups.count, 2, 2)


def _weights(sample_weight: Any, n: int) -> np.ndarray:
    weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if len(weights) != n:
        raise DataError(f"{len(weights)} sample weights for {n} rows")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DataError("sample weights must be finite and not negative")
    return weights


def rates_from_cells(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Selection rate, TPR, FPR and weighted count from (..., G, 2, 2) cells; works on bootstrap stacks too.
    Keys ending in `_overall` pool the groups."""
    out = {}
    for suffix, c in (("", cells), ("_overall", cells.sum(axis=-3))):
        n = c.sum(axis=(-1, -2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["selection_rate" + suffix] = c[..., :, 1].sum(axis=-1) / n
        out["true_positive_rate" + suffix] = _rate(c[..., 1, 1], c[..., 1, :].sum(axis=-1))
        out["false_positive_rate" + suffix] = _rate(c[..., 0, 1], c[..., 0, :].sum(axis=-1))
        out["count" + suffix] = n
    return out


def _rate(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
    """hits / total, 0 where total is 0: scikit-learn's normalised confusion matrix (fairlearn's TPR/FPR)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / np.where(total > 0, total, 1), 0.0)


def difference(values: np.ndarray, overall: np.ndarray, method: Method) -> np.ndarray:
    if method == "between_groups":
        return values.max(axis=-1) - values.min(axis=-1)
    return np.abs(values - overall[..., None]).max(axis=-1)


def ratio(values: np.ndarray, overall: np.ndarray, method: Method) -> np.ndarray:
    """fairlearn's ratio: min / max, or the smallest group/overall ratio folded below one (NaNs skipped)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "between_groups":
            return values.min(axis=-1) / values.max(axis=-1)
        raw = values / overall[..., None]
        folded = np.where(raw > 1, 1 / raw, raw)
    all_nan = np.isnan(folded).all(axis=-1)
    return np.where(all_nan, np.nan, np.nanmin(np.where(np.isnan(folded), np.inf, folded), axis=-1))


def disparities(rates: dict[str, np.ndarray], method: Method = "between_groups", agg: Agg = "worst_case") -> dict[str, np.ndarray]:
    """Demographic parity and equalized odds, difference and ratio, from `rates_from_cells`."""
    out = {}
    for name, short in (("selection_rate", "dp"), ("true_positive_rate", "tpr"), ("false_positive_rate", "fpr")):
        out[f"{short}_difference"] = difference(rates[name], rates[name + "_overall"], method)
        out[f"{short}_ratio"] = ratio(rates[name], rates[name + "_overall"], method)
    pair_d = np.stack([out["tpr_difference"], out["fpr_difference"]])
    pair_r = np.stack([out["tpr_ratio"], out["fpr_ratio"]])
    out["eo_difference"] = pair_d.max(axis=0) if agg == "worst_case" else pair_d.mean(axis=0)
    with warnings.catch_warnings():  # both ratios NaN (no group selected anyone): NaN, as in fairlearn
        warnings.simplefilter("ignore", RuntimeWarning)
        out["eo_ratio"] = np.nanmin(pair_r, axis=0) if agg == "worst_case" else pair_r.mean(axis=0)
    return out


@dataclass(frozen=True)
class GroupMetrics:
    """Per-group rates and their disparities for one (y_true, y_pred, sensitive) triple."""

    groups: Groups
    cells: np.ndarray
    method: Method = "between_groups"
    agg: Agg = "worst_case"
    rates: dict[str, np.ndarray] = field(init=False)
    disparity: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        rates = rates_from_cells(self.cells)
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "disparity", {k: float(v) for k, v in disparities(rates, self.method, self.agg).items()})

    @property
    def demographic_parity_difference(self) -> float:
        return self.disparity["dp_difference"]

    @property
    def demographic_parity_ratio(self) -> float:
        return self.disparity["dp_ratio"]

    @property
    def equalized_odds_difference(self) -> float:
        return self.disparity["eo_difference"]

    @property
    def equalized_odds_ratio(self) -> float:
        return self.disparity["eo_ratio"]

    def by_group(self) -> dict[str, dict[str, float]]:
        """{group name: {count, selection_rate, true_positive_rate, false_positive_rate}}."""
        keys = ("count", "selection_rate", "true_positive_rate", "false_positive_rate")
        return {name: {k: float(self.rates[k][g]) for k in keys} for g, name in enumerate(self.groups.names)}

    def to_dict(self) -> dict[str, Any]:
        overall = {k.removesuffix("_overall"): float(v) for k, v in self.rates.items() if k.endswith("_overall")}
        return {"columns": self.groups.columns, "method": self.method, "agg": self.agg, "by_group": self.by_group(),
                "overall": overall, **self.disparity}


def group_metrics(y_true: Any, y_pred: Any, sensitive: Any, *, sample_weight: Any = None, positive: Any = None,
                  method: Method = "between_groups", agg: Agg = "worst_case", min_groups: int = 2) -> GroupMetrics:
    """Per-group selection rate, TPR and FPR with their disparities. Labels are 0/1 (or booleans), or name the
    positive outcome with `positive`. Fewer than `min_groups` groups is a DataError: there is no disparity to
    measure with one group."""
    t = binarize(y_true, positive, "y_true")
    p = binarize(y_pred, positive, "y_pred")
    if isinstance(sensitive, Groups):
        groups, cells = sensitive, cell_counts(sensitive, t, p, sample_weight)
    else:
        groups, cells = _lattice_cells(sensitive, t, p, sample_weight)
    if groups.count < min_groups:
        only = ", ".join(map(repr, groups.names))
        raise DataError(f"sensitive column(s) {groups.columns} hold one group only ({only}); a disparity needs at "
                        f"least {min_groups} groups")
    return GroupMetrics(groups, cells, method, agg)


def _lattice_cells(sensitive: Any, y_true: np.ndarray, y_pred: np.ndarray, sample_weight: Any) -> tuple[Groups, np.ndarray]:
    """The fast path: count the cells of every value combination in one bincount, then keep the occupied
    ones. No pass over the rows renumbers them into groups."""
    key, lattice, columns = encode_lattice(sensitive)
    if not len(key) == len(y_true) == len(y_pred):
        raise DataError(f"{len(key)} sensitive values but {len(y_true)} true labels and {len(y_pred)} predictions")
    index = key * 4
    index += y_true.astype(np.int64) * 2 + y_pred  # (cell, true label, prediction) -> one bin
    weights = None if sample_weight is None else _weights(sample_weight, len(key))
    full = np.bincount(index, weights=weights, minlength=len(lattice) * 4).astype(np.float64).reshape(len(lattice), 2, 2)
    # With weights a group of zero total weight is still a group (fairlearn's): occupancy counts rows.
    occupancy = full.sum(axis=(1, 2)) if weights is None else np.bincount(key, minlength=len(lattice))
    groups = Groups.from_lattice(key, lattice, columns, occupancy)
    return groups, full[groups.present]


def _metric(y_true: Any, y_pred: Any, sensitive_features: Any, sample_weight: Any, method: Method, agg: Agg = "worst_case") -> GroupMetrics:
    return group_metrics(y_true, y_pred, sensitive_features, sample_weight=sample_weight, method=method, agg=agg, min_groups=1)


def demographic_parity_difference(y_true: Any, y_pred: Any, *, sensitive_features: Any, method: Method = "between_groups",
                                  sample_weight: Any = None) -> float:
    """fairlearn.metrics.demographic_parity_difference, from one bincount."""
    return _metric(y_true, y_pred, sensitive_features, sample_weight, method).demographic_parity_difference


def demographic_parity_ratio(y_true: Any, y_pred: Any, *, sensitive_features: Any, method: Method = "between_groups",
                             sample_weight: Any = None) -> float:
    """fairlearn.metrics.demographic_parity_ratio, from one bincount."""
    return _metric(y_true, y_pred, sensitive_features, sample_weight, method).demographic_parity_ratio


def equalized_odds_difference(y_true: Any, y_pred: Any, *, sensitive_features: Any, method: Method = "between_groups",
                              sample_weight: Any = None, agg: Agg = "worst_case") -> float:
    """fairlearn.metrics.equalized_odds_difference, from one bincount."""
    return _metric(y_true, y_pred, sensitive_features, sample_weight, method, agg).equalized_odds_difference


def equalized_odds_ratio(y_true: Any, y_pred: Any, *, sensitive_features: Any, method: Method = "between_groups",
                         sample_weight: Any = None, agg: Agg = "worst_case") -> float:
    """fairlearn.metrics.equalized_odds_ratio, from one bincount."""
    return _metric(y_true, y_pred, sensitive_features, sample_weight, method, agg).equalized_odds_ratio


def fairlearn_metrics(y_true: Any, y_pred: Any, sensitive: Any, *, sample_weight: Any = None,
                      method: Method = "between_groups") -> dict[str, Any]:
    """The same figures through fairlearn's MetricFrame and metric functions: the slow reference path the
    benchmark times and the tests compare against."""
    fm = require("fairlearn.metrics", "The fairlearn reference path")
    params = {"sample_weight": sample_weight}
    frame = fm.MetricFrame(
        metrics={"selection_rate": fm.selection_rate, "true_positive_rate": fm.true_positive_rate,
                 "false_positive_rate": fm.false_positive_rate},
        y_true=y_true, y_pred=y_pred, sensitive_features=sensitive,
        sample_params={k: params for k in ("selection_rate", "true_positive_rate", "false_positive_rate")},
    )
    common = {"sensitive_features": sensitive, "method": method, "sample_weight": sample_weight}
    return {
        "by_group": frame.by_group,
        "dp_difference": fm.demographic_parity_difference(y_true, y_pred, **common),
        "dp_ratio": fm.demographic_parity_ratio(y_true, y_pred, **common),
        "eo_difference": fm.equalized_odds_difference(y_true, y_pred, **common),
        "eo_ratio": fm.equalized_odds_ratio(y_true, y_pred, **common),
    }
