"""Confidence intervals and significance for the fairness figures.

* **Rates and their disparities** (selection rate, TPR, FPR; parity and equalized-odds differences): a
  stratified percentile bootstrap. Rows are resampled with replacement within each group, which keeps every
  group in every replicate. The metrics depend on the rows only through each group's (true label, prediction)
  cell counts, so a replicate is one multinomial draw of those four counts per group: the same distribution
  as resampling the rows, at a cost that does not grow with the number of rows.
* **Scores of generated text** (sentiment, length, ...): per-group means with a percentile bootstrap, the
  disparity (largest minus smallest group mean) with a bootstrap over all groups
  at once, and a permutation-test p-value for "the groups' means differ" (`scipy.stats.permutation_test`,
  group labels shuffled).
* **Shares of predicted attributes** (images): Wilson intervals (`scipy.stats.binomtest`).

A group too small for its interval to mean anything gets None instead, and a note that says so; so does every
disparity it takes part in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from gensdk_fairness._deps import require
from gensdk_fairness.metrics import Agg, Method, disparities, rates_from_cells

__all__ = ["CountIntervals", "count_intervals", "interval", "mean_disparity", "share_intervals"]

# Rows (or positives / negatives, for TPR / FPR) a group needs before a bootstrap interval of its rate is
# reported: with fewer, the percentile bootstrap's coverage falls well below its nominal level.
MIN_CI_ROWS = 30
DEFAULT_BOOTSTRAP = 1000

# Which cells a rate is estimated from: all rows, the true positives' row, the true negatives' row.
_RATE_BASE = {"selection_rate": "rows", "true_positive_rate": "positives", "false_positive_rate": "negatives"}


def interval(draws: np.ndarray, level: float) -> list[float] | None:
    """Percentile interval of bootstrap draws; None when the draws are not all finite."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.size == 0 or not np.isfinite(draws).all():
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return [float(low), float(high)]


@dataclass
class CountIntervals:
    """Bootstrap draws of the rates and disparities of one table, and which groups were too small."""

    draws: dict[str, np.ndarray]
    too_small: dict[str, list[str]] = field(default_factory=dict)  # rate -> names of groups below the minimum
    notes: list[str] = field(default_factory=list)

    def group_interval(self, rate: str, group: int, name: str, level: float) -> list[float] | None:
        if name in self.too_small.get(rate, []):
            return None
        return interval(self.draws[rate][:, group], level)

    def disparity_interval(self, key: str, level: float) -> list[float] | None:
        if self.blocked(key):
            return None
        return interval(self.draws[key], level)

    def blocked(self, key: str) -> bool:
        """A disparity needs an interval for every group of the rates it compares."""
        rates = {"dp": ["selection_rate"], "tpr": ["true_positive_rate"], "fpr": ["false_positive_rate"],
                 "eo": ["true_positive_rate", "false_positive_rate"]}[key.split("_")[0]]
        return any(self.too_small.get(r) for r in rates)


def count_intervals(cells: np.ndarray, names: Sequence[str], *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                    min_rows: int = MIN_CI_ROWS, method: Method = "between_groups", agg: Agg = "worst_case",
                    rates: Sequence[str] = tuple(_RATE_BASE), what: str = "") -> CountIntervals:
    """Bootstrap the (G, 2, 2) unweighted cell counts of a table `n_boot` times, within each group."""
    rng = np.random.default_rng(seed)
    counts = np.rint(cells).astype(np.int64)
    stack = np.empty((n_boot, *counts.shape), dtype=np.float64)
    for g in range(counts.shape[0]):
        total = int(counts[g].sum())
        stack[:, g] = rng.multinomial(total, counts[g].ravel() / total, size=n_boot).reshape(n_boot, 2, 2)
    boot_rates = rates_from_cells(stack)
    draws = {**{k: v for k, v in boot_rates.items() if not k.endswith("_overall")},
             **disparities(boot_rates, method, agg)}
    result = CountIntervals(draws)
    for rate in rates:
        small = _small_groups(counts, names, rate, min_rows)
        if small:
            result.too_small[rate] = [n for n, _ in small]
            listed = ", ".join(f"{n!r} ({k})" for n, k in small)
            result.notes.append(f"{what}{rate.replace('_', ' ')}: no confidence interval for group(s) {listed}: fewer "
                                f"than {min_rows} {_RATE_BASE[rate]} (nor for any disparity over them)")
    return result


def _small_groups(counts: np.ndarray, names: Sequence[str], rate: str, min_rows: int) -> list[tuple[str, int]]:
    base = _RATE_BASE[rate]
    sizes = {"rows": counts.sum(axis=(1, 2)), "positives": counts[:, 1, :].sum(axis=1),
             "negatives": counts[:, 0, :].sum(axis=1)}[base]
    return [(names[g], int(k)) for g, k in enumerate(sizes) if k < min_rows]


# -- scores of generated text -----------------------------------------------------------------------------


@dataclass
class MeanDisparity:
    """Per-group means of one score, and how far apart they are."""

    groups: list[str]
    counts: list[int]
    means: list[float]
    mean_intervals: list[list[float] | None]
    disparity: float
    disparity_interval: list[float] | None
    p_value: float | None
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_group": {g: {"count": n, "mean": m, "ci": ci}
                         for g, n, m, ci in zip(self.groups, self.counts, self.means, self.mean_intervals)},
            "disparity": self.disparity, "disparity_ci": self.disparity_interval, "p_value": self.p_value,
            "notes": self.notes,
        }


def _spread(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    means = np.stack([np.mean(s, axis=axis) for s in samples])
    return means.max(axis=0) - means.min(axis=0)


def mean_disparity(samples: dict[str, np.ndarray], *, n_boot: int = DEFAULT_BOOTSTRAP, n_permutations: int = 2000,
                   level: float = 0.95, seed: int = 0, min_rows: int = MIN_CI_ROWS, what: str = "") -> MeanDisparity:
    """Group means of a score with bootstrap intervals, their spread (max - min) with an interval, and the
    permutation p-value of the spread under "group does not matter"."""
    stats = require("scipy.stats", "Permutation tests of text audits")
    names = list(samples)
    arrays = [np.asarray(samples[n], dtype=np.float64) for n in names]
    notes: list[str] = []
    small = [(n, len(a)) for n, a in zip(names, arrays) if len(a) < min_rows]
    if small:
        listed = ", ".join(f"{n!r} ({k})" for n, k in small)
        notes.append(f"{what}no confidence interval for group(s) {listed}: fewer than {min_rows} outputs "
                     "(nor for the disparity)")
    rng = np.random.default_rng(seed)
    cis = [None if len(a) < min_rows else _mean_ci(a, n_boot, level, rng) for a in arrays]
    spread = float(_spread(*arrays))
    spread_ci = None if small or len(arrays) < 2 else _joint_ci(arrays, n_boot, level, rng)
    p_value = None
    if len(arrays) >= 2 and all(len(a) >= 2 for a in arrays):
        if np.ptp(np.concatenate(arrays)) == 0:
            p_value = 1.0  # every score equal: no permutation can produce a larger spread
        else:
            test = stats.permutation_test(arrays, _spread, permutation_type="independent", vectorized=True,
                                          n_resamples=n_permutations, alternative="greater", rng=rng)
            p_value = float(test.pvalue)
    return MeanDisparity(names, [len(a) for a in arrays], [float(a.mean()) if len(a) else float("nan") for a in arrays],
                         cis, spread, spread_ci, p_value, notes)


def _mean_ci(values: np.ndarray, n_boot: int, level: float, rng: np.random.Generator) -> list[float]:
    if np.ptp(values) == 0:  # constant: every resample has the same mean (scipy would warn and return NaN)
        return [float(values[0]), float(values[0])]
    draws = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    return interval(draws, level)  # type: ignore[return-value]


def _joint_ci(arrays: list[np.ndarray], n_boot: int, level: float, rng: np.random.Generator) -> list[float] | None:
    """Interval of the spread, each group resampled within itself in every replicate."""
    means = np.stack([a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1) for a in arrays])
    return interval(means.max(axis=0) - means.min(axis=0), level)


# -- shares of predicted attributes -----------------------------------------------------------------------


def share_intervals(counts: Sequence[int], level: float = 0.95) -> list[list[float]]:
    """Wilson interval of each class's share of the total."""
    stats = require("scipy.stats", "Intervals of attribute shares")
    total = int(sum(counts))
    out = []
    for k in counts:
        ci = stats.binomtest(int(k), total).proportion_ci(confidence_level=level, method="wilson")
        out.append([float(ci.low), float(ci.high)])
    return out
