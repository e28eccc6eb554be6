"""Does generation preserve, erase or amplify bias? Real vs synthetic tables, side by side.

    audit = audit_tables(real, synthetic, sensitive=["sex"], target="income", positive=">50K")
    audit.verdict            # "pass" or "breach" against the thresholds
    audit.to_dict()          # every figure, JSON-safe; render_html(audit.to_dict()) for compliance readers

Four sections, each with bootstrap confidence intervals (see stats.py):

1. **Representation**: each group's share of the real and of the synthetic rows (erased and invented groups
   are named).
2. **Selection rates**: P(target = positive | group) in each table; the demographic-parity difference and
   ratio of each, and the amplification (synthetic difference minus real difference).
3. **Equalized odds of a downstream classifier**: one classifier trained on real rows, one on synthetic rows,
   both tested on the same real held-out rows; their equalized-odds differences and the increase the
   synthetic training data causes (a paired bootstrap over the shared test rows).
4. **Checks** against `TableThresholds` (e.g. "synthetic data amplifies the parity gap by more than 0.05").

Metric definitions are fairlearn's (metrics.py); the numbers agree with fairlearn to 1e-9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gensdk.errors import ConfigError, DataError
from gensdk.family import Progress
from gensdk.request import validate_options
from gensdk_fairness._deps import require
from gensdk_fairness.checks import Check, at_least, at_most, json_safe, overall_verdict
from gensdk_fairness.groups import Groups, binarize, encode_groups, sensitive_frame
from gensdk_fairness.metrics import GroupMetrics, cell_counts, disparities, rates_from_cells
from gensdk_fairness.stats import DEFAULT_BOOTSTRAP, MIN_CI_ROWS, count_intervals, interval

__all__ = ["TableAudit", "TableThresholds", "audit_tables", "default_classifier"]


class TableThresholds(BaseModel):
    """Limits the synthetic table is checked against; None switches a check off."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Synthetic parity difference minus the real one: "amplifies the parity gap by more than 0.05".
    max_parity_amplification: float | None = Field(0.05, ge=0)
    # Absolute limits on the synthetic table itself (0.8 is the "four-fifths rule" for the ratio).
    max_parity_difference: float | None = Field(None, ge=0)
    min_parity_ratio: float | None = Field(None, ge=0, le=1)
    # Largest change of one group's share of the rows.
    max_representation_shift: float | None = Field(0.05, ge=0)
    # Equalized-odds difference of the classifier trained on synthetic rows minus the one trained on real rows.
    max_equalized_odds_increase: float | None = Field(0.05, ge=0)


@dataclass
class TableAudit:
    sensitive: list[str]
    target: str
    positive: Any
    rows: dict[str, int]
    representation: dict[str, Any]
    selection_rates: dict[str, Any]
    parity: dict[str, Any]
    equalized_odds: dict[str, Any] | None
    checks: list[Check]
    notes: list[str]
    settings: dict[str, Any]
    sources: dict[str, Any] = field(default_factory=dict)
    kind: str = "table"

    @property
    def verdict(self) -> str:
        return overall_verdict(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "kind": self.kind, "verdict": self.verdict, "sensitive": self.sensitive, "target": self.target,
            "positive": str(self.positive), "rows": self.rows, "representation": self.representation,
            "selection_rates": self.selection_rates, "parity": self.parity, "equalized_odds": self.equalized_odds,
            "checks": [c.to_dict() for c in self.checks], "notes": self.notes, "settings": self.settings,
            "sources": self.sources,
        })


def audit_tables(real: Any, synthetic: Any, *, sensitive: str | Sequence[str], target: str, positive: Any = None,
                 thresholds: TableThresholds | dict[str, Any] | None = None, classifier: Any = "auto",
                 n_boot: int = DEFAULT_BOOTSTRAP, level: float = 0.95, seed: int = 0, min_ci_rows: int = MIN_CI_ROWS,
                 test_size: float = 0.3, progress: Progress | None = None, sources: dict[str, Any] | None = None) -> TableAudit:
    """Compare a synthetic table with the real one it imitates. `classifier`: "auto" / "logistic", "hgb" (see
    `default_classifier`), any scikit-learn classifier (cloned), or None to skip the equalized-odds section."""
    from gensdk.tabular import read_table

    limits = validate_options(TableThresholds, thresholds, "fairness thresholds")
    columns = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    real, synthetic = read_table(real), read_table(synthetic)
    sens_real = sensitive_frame(real, columns, "real table")
    sens_syn = sensitive_frame(synthetic, columns, "synthetic table")
    y_real, y_syn = _labels(real, target, positive, "real"), _labels(synthetic, target, positive, "synthetic")
    g_real = encode_groups(sens_real)
    if g_real.count < 2:
        raise DataError(f"the real table has one group only in {columns} ({g_real.names[0]!r}): a disparity needs two")
    step = _stepper(progress, 3 + (classifier is not None))
    common = dict(n_boot=n_boot, level=level, seed=seed, min_rows=min_ci_rows)
    representation = _representation(sens_real, sens_syn, **common)
    step("representation")
    real_rates = dataset_rates(g_real, y_real, "real", **common)
    syn_rates = dataset_rates(encode_groups(sens_syn), y_syn, "synthetic", **{**common, "seed": seed + 1})
    step("selection rates")
    parity = _parity(real_rates, syn_rates, level)
    eo = None
    if classifier is not None:
        eo = _classifier_comparison(real, synthetic, columns, target, y_real, y_syn, classifier, test_size, **common)
        step("classifiers")
    notes = [*representation.pop("notes"), *real_rates.pop("notes"), *syn_rates.pop("notes"), *(eo or {}).pop("notes", [])]
    if eo is None:
        notes.append("equalized odds not measured: no classifier (classifier=None)")
    checks = _checks(limits, representation, parity, eo)
    step("checks")
    return TableAudit(
        columns, target, positive, {"real": len(real), "synthetic": len(synthetic)}, representation,
        {"real": real_rates.pop("by_group"), "synthetic": syn_rates.pop("by_group")}, parity, eo, checks, notes,
        {"bootstrap": n_boot, "level": level, "seed": seed, "min_ci_rows": min_ci_rows, "test_size": test_size,
         "thresholds": limits.model_dump()}, dict(sources or {}))


def _labels(frame: Any, target: str, positive: Any, which: str) -> np.ndarray:
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in the {which} table; it has: {', '.join(map(str, frame.columns))}")
    return binarize(frame[target], positive, f"target {target!r} of the {which} table")


def _stepper(progress: Progress | None, total: int) -> Any:
    done = [0]

    def step(message: str) -> None:
        done[0] += 1
        if progress:
            progress(done[0], total, message)

    return step


# -- 1. representation ------------------------------------------------------------------------------------


def _representation(sens_real: Any, sens_syn: Any, *, n_boot: int, level: float, seed: int, min_rows: int) -> dict[str, Any]:
    """Group shares in both tables, encoded together so a group missing from one table still has a row."""
    import pandas as pd

    joint = encode_groups(pd.concat([sens_real, sens_syn], ignore_index=True))
    n_real = len(sens_real)
    real_counts = np.bincount(joint.codes[:n_real], minlength=joint.count)
    syn_counts = np.bincount(joint.codes[n_real:], minlength=joint.count)
    real_share, syn_share = real_counts / real_counts.sum(), syn_counts / syn_counts.sum()
    shift = syn_share - real_share
    rng = np.random.default_rng(seed + 2)
    draws = (rng.multinomial(syn_counts.sum(), syn_share, n_boot) / syn_counts.sum()
             - rng.multinomial(real_counts.sum(), real_share, n_boot) / real_counts.sum())
    notes = [f"group {name!r} ({r} real rows) does not occur in the synthetic table (erased)"
             for name, r, s in zip(joint.names, real_counts, syn_counts) if s == 0]
    notes += [f"group {name!r} occurs only in the synthetic table ({s} rows)"
              for name, r, s in zip(joint.names, real_counts, syn_counts) if r == 0]
    by_group = {name: {"real_count": int(r), "real_share": float(rs), "synthetic_count": int(s),
                       "synthetic_share": float(ss), "shift": float(d)}
                for name, r, rs, s, ss, d in zip(joint.names, real_counts, real_share, syn_counts, syn_share, shift)}
    return {"by_group": by_group, "max_abs_shift": float(np.abs(shift).max()),
            "max_abs_shift_ci": interval(np.abs(draws).max(axis=1), level),
            "total_variation": float(0.5 * np.abs(shift).sum()), "notes": notes}


# -- 2. selection rates and demographic parity ------------------------------------------------------------


def dataset_rates(groups: Groups, y: np.ndarray, which: str, *, n_boot: int, level: float, seed: int, min_rows: int) -> dict[str, Any]:
    """Selection rate per group with intervals, and the parity difference and ratio of one table."""
    cells = cell_counts(groups, y, y)
    metrics = GroupMetrics(groups, cells)
    boot = count_intervals(cells, groups.names, n_boot=n_boot, seed=seed, min_rows=min_rows,
                           rates=("selection_rate",), what=f"{which} table, ")
    by_group = {name: {"count": int(cells[g].sum()), "selection_rate": float(metrics.rates["selection_rate"][g]),
                       "ci": boot.group_interval("selection_rate", g, name, level)}
                for g, name in enumerate(groups.names)}
    out: dict[str, Any] = {"by_group": by_group, "notes": boot.notes, "draws": boot.draws["dp_difference"],
                           "blocked": boot.blocked("dp_difference"), "groups": groups.count,
                           "overall_rate": float(metrics.rates["selection_rate_overall"])}
    if groups.count < 2:
        out["notes"].append(f"the {which} table has one group only ({groups.names[0]!r}): no parity difference")
        return {**out, "dp_difference": None, "dp_ratio": None, "dp_difference_ci": None, "dp_ratio_ci": None, "blocked": True}
    for key in ("dp_difference", "dp_ratio"):
        out[key] = metrics.disparity[key]
        out[f"{key}_ci"] = boot.disparity_interval(key, level)
    return out


def _parity(real: dict[str, Any], syn: dict[str, Any], level: float) -> dict[str, Any]:
    keys = ("dp_difference", "dp_difference_ci", "dp_ratio", "dp_ratio_ci", "overall_rate")
    amplification = None if syn["dp_difference"] is None else syn["dp_difference"] - real["dp_difference"]
    blocked = real["blocked"] or syn["blocked"]
    ci = None if blocked else interval(syn["draws"] - real["draws"], level)
    return {"real": {k: real[k] for k in keys}, "synthetic": {k: syn[k] for k in keys},
            "amplification": amplification, "amplification_ci": ci, "trend": parity_trend(amplification, ci)}


# -- 3. equalized odds of classifiers trained on real vs synthetic rows -----------------------------------


def default_classifier(kind: str = "logistic", seed: int = 0) -> Any:
    """The downstream classifier of the equalized-odds comparison.

    ``"logistic"`` (the default): one-hot categories and standardised numbers into a logistic regression, the
    usual model of fairness studies; fast and single-threaded. ``"hgb"``: a histogram gradient-boosted tree
    reading the categoricals natively, stronger on tables but several times slower (and OpenMP-threaded)."""
    from sklearn.compose import make_column_selector, make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=100, categorical_features="from_dtype", random_state=seed)
    if kind != "logistic":
        raise ConfigError(f"unknown classifier {kind!r}: use 'logistic', 'hgb', a scikit-learn classifier or None")
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_include="category")),
        # Missing numbers (a VAE generates them at the training rate) take the median, as a classifier needs.
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), make_column_selector(dtype_include="number")))
    return make_pipeline(encode, LogisticRegression(max_iter=1000))


def _classifier_comparison(real: Any, synthetic: Any, columns: list[str], target: str, y_real: np.ndarray,
                           y_syn: np.ndarray, classifier: Any, test_size: float, *, n_boot: int, level: float,
                           seed: int, min_rows: int) -> dict[str, Any]:
    clone = require("sklearn.base", "The equalized-odds comparison of classifiers").clone
    from sklearn.model_selection import train_test_split

    features = [c for c in real.columns if c != target]
    absent = [c for c in features if c not in synthetic.columns]
    if absent:
        raise DataError(f"the synthetic table lacks the real table's column(s) {absent}")
    x_real, x_syn = _feature_frames(real[features], synthetic[features])
    stratify = y_real if np.bincount(y_real, minlength=2).min() >= 2 else None
    train, test = train_test_split(np.arange(len(real)), test_size=test_size, random_state=seed, stratify=stratify)
    estimator = default_classifier("logistic" if classifier == "auto" else classifier, seed) if isinstance(classifier, str) else classifier
    notes: list[str] = []
    preds = {"real": _fit_predict(clone(estimator), x_real.iloc[train], y_real[train], x_real.iloc[test], "real", notes)}
    preds["synthetic"] = _fit_predict(clone(estimator), x_syn, y_syn, x_real.iloc[test], "synthetic", notes)
    groups = encode_groups(real[columns].iloc[test])
    y_test = y_real[test]
    name = type(estimator[-1] if hasattr(estimator, "steps") else estimator).__name__
    result: dict[str, Any] = {"test_rows": int(len(test)), "train_rows": {"real": int(len(train)), "synthetic": int(len(x_syn))},
                              "classifier": name, "notes": notes}
    for which, pred in preds.items():
        result[which] = None if pred is None else _model_metrics(groups, y_test, pred, which, n_boot, level, seed, min_rows, notes)
    result.update(_eo_increase(groups, y_test, preds, result, n_boot, level, seed))
    return result


def _feature_frames(real: Any, synthetic: Any) -> tuple[Any, Any]:
    """Both tables with text columns as pandas categoricals over the union of their values (so the model
    sees one encoding), numbers as floats."""
    import pandas as pd

    real, synthetic = real.copy(), synthetic.copy()
    for name in real.columns:
        if pd.api.types.is_numeric_dtype(real[name]) and not pd.api.types.is_bool_dtype(real[name]):
            real[name], synthetic[name] = real[name].astype(float), pd.to_numeric(synthetic[name], errors="coerce")
            continue
        values = sorted(set(real[name].astype(str)) | set(synthetic[name].astype(str)))
        real[name] = pd.Categorical(real[name].astype(str), categories=values)
        synthetic[name] = pd.Categorical(synthetic[name].astype(str), categories=values)
    return real, synthetic


def _fit_predict(model: Any, x: Any, y: np.ndarray, x_test: Any, which: str, notes: list[str]) -> np.ndarray | None:
    if len(np.unique(y)) < 2:
        notes.append(f"no classifier trained on the {which} rows: their target takes one value only")
        return None
    try:
        model.fit(x, y)
        return np.asarray(model.predict(x_test)).astype(np.int8)
    except (TypeError, ValueError) as exc:  # scikit-learn's words for data it cannot fit
        raise DataError(f"the classifier could not be trained on the {which} rows: {exc}") from None


def _model_metrics(groups: Groups, y: np.ndarray, pred: np.ndarray, which: str, n_boot: int, level: float,
                   seed: int, min_rows: int, notes: list[str]) -> dict[str, Any]:
    cells = cell_counts(groups, y, pred)
    metrics = GroupMetrics(groups, cells)
    boot = count_intervals(cells, groups.names, n_boot=n_boot, seed=seed + 3, min_rows=min_rows,
                           what=f"classifier trained on {which} rows, ")
    notes.extend(n for n in boot.notes if n not in notes)
    rates = ("selection_rate", "true_positive_rate", "false_positive_rate")
    by_group = {name: {"count": int(cells[g].sum()),
                       **{r: float(metrics.rates[r][g]) for r in rates},
                       **{f"{r}_ci": boot.group_interval(r, g, name, level) for r in rates}}
                for g, name in enumerate(groups.names)}
    summary = {k: metrics.disparity[k] for k in ("eo_difference", "eo_ratio", "tpr_difference", "fpr_difference", "dp_difference")}
    return {"accuracy": float((y == pred).mean()), "by_group": by_group, **summary,
            "eo_difference_ci": boot.disparity_interval("eo_difference", level),
            "dp_difference_ci": boot.disparity_interval("dp_difference", level), "_blocked": boot.blocked("eo_difference")}


def _eo_increase(groups: Groups, y: np.ndarray, preds: dict[str, Any], result: dict[str, Any], n_boot: int,
                 level: float, seed: int) -> dict[str, Any]:
    """Synthetic-trained minus real-trained equalized-odds difference, with a paired bootstrap: the same
    resampled test rows judge both classifiers in each replicate."""
    blocked = any([result[which].pop("_blocked") for which in ("real", "synthetic") if result[which] is not None])
    if preds["real"] is None or preds["synthetic"] is None:
        return {"eo_increase": None, "eo_increase_ci": None}
    increase = result["synthetic"]["eo_difference"] - result["real"]["eo_difference"]
    if blocked:
        return {"eo_increase": increase, "eo_increase_ci": None}
    key = groups.codes * 8 + y.astype(np.int64) * 4 + preds["real"] * 2 + preds["synthetic"]
    joint = np.bincount(key, minlength=groups.count * 8).reshape(groups.count, 8)
    rng = np.random.default_rng(seed + 4)
    stack = np.stack([rng.multinomial(joint[g].sum(), joint[g] / joint[g].sum(), n_boot) for g in range(groups.count)], axis=1)
    stack = stack.reshape(n_boot, groups.count, 2, 2, 2).astype(np.float64)  # [b, g, true, pred_real, pred_syn]
    eo_real = disparities(rates_from_cells(stack.sum(axis=4)))["eo_difference"]
    eo_syn = disparities(rates_from_cells(stack.sum(axis=3)))["eo_difference"]
    return {"eo_increase": increase, "eo_increase_ci": interval(eo_syn - eo_real, level)}


# -- 4. checks ----------------------------------------------------------------------------------------------


def _checks(limits: TableThresholds, representation: dict[str, Any], parity: dict[str, Any], eo: dict[str, Any] | None) -> list[Check]:
    checks = []
    syn = parity["synthetic"]
    if limits.max_representation_shift is not None:
        checks.append(at_most("representation_shift", representation["max_abs_shift"], limits.max_representation_shift,
                              "largest change of a group's share of the rows", representation["max_abs_shift_ci"]))
    if limits.max_parity_amplification is not None:
        checks.append(at_most("parity_amplification", parity["amplification"], limits.max_parity_amplification,
                              "synthetic minus real demographic-parity difference", parity["amplification_ci"]))
    if limits.max_parity_difference is not None:
        checks.append(at_most("parity_difference", syn["dp_difference"], limits.max_parity_difference,
                              "demographic-parity difference of the synthetic table", syn["dp_difference_ci"]))
    if limits.min_parity_ratio is not None:
        checks.append(at_least("parity_ratio", syn["dp_ratio"], limits.min_parity_ratio,
                               "demographic-parity ratio of the synthetic table", syn["dp_ratio_ci"]))
    if limits.max_equalized_odds_increase is not None and eo is not None:
        checks.append(at_most("equalized_odds_increase", eo["eo_increase"], limits.max_equalized_odds_increase,
                              "equalized-odds difference of the synthetic-trained minus the real-trained classifier",
                              eo["eo_increase_ci"]))
    return checks


def parity_trend(change: float | None, ci: list[float] | None, tolerance: float = 0.01) -> str:
    """How the synthetic parity gap moved against the real one: 'amplified' or 'reduced' when the interval
    of the change excludes 0 (without an interval: when it is larger than `tolerance`), else 'preserved'."""
    if change is None:
        return "unmeasured"
    if ci is not None:
        return "amplified" if ci[0] > 0 else "reduced" if ci[1] < 0 else "preserved"
    return "amplified" if change > tolerance else "reduced" if change < -tolerance else "preserved"
