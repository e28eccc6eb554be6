"""What fairness-aware sampling costs in fidelity: two distances between a sample and a reference table.

* `marginal_tvd`: the mean over columns of the total variation distance between the column's distributions
  (categories as they are; numbers in `bins` quantile bins of the reference).
* `association_distance`: the mean over column pairs of |Cramér's V (reference) - Cramér's V (sample)|, on the
  same discretisation: how much the pairwise dependence structure moved.

Both lie in [0, 1]; 0 means identical. They are SDMetrics-free on purpose: a few bincounts, no extra package.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from gensdk.errors import DataError

__all__ = ["quality_distances"]

DEFAULT_BINS = 10


def quality_distances(reference: Any, sample: Any, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Marginal and pairwise-association distances of `sample` from `reference` over their shared columns."""
    columns = [c for c in reference.columns if c in sample.columns]
    if not columns:
        raise DataError("the sample and the reference share no column to compare")
    if len(reference) == 0 or len(sample) == 0:
        raise DataError("cannot compare an empty table")
    coded = {c: _discretise(reference[c], sample[c], bins) for c in columns}
    per_column = {c: _tvd(ref, smp, k) for c, (ref, smp, k) in coded.items()}
    pairs = [abs(_cramers_v(coded[a][0], coded[b][0], coded[a][2], coded[b][2])
                 - _cramers_v(coded[a][1], coded[b][1], coded[a][2], coded[b][2]))
             for a, b in combinations(columns, 2)]
    return {"marginal_tvd": float(np.mean(list(per_column.values()))),
            "association_distance": float(np.mean(pairs)) if pairs else 0.0,
            "per_column_tvd": per_column, "bins": bins}


def _discretise(ref: Any, smp: Any, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of both columns on one scale: quantile bins of the reference for numbers, categories otherwise."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(ref) and not pd.api.types.is_bool_dtype(ref) and ref.nunique() > bins:
        edges = np.unique(np.nanquantile(ref.to_numpy(dtype=float), np.linspace(0, 1, bins + 1)[1:-1]))
        return _binned(ref, edges), _binned(smp, edges), len(edges) + 2
    values = pd.Index(sorted(set(ref.astype(str)) | set(smp.astype(str))))
    return values.get_indexer(ref.astype(str)), values.get_indexer(smp.astype(str)), len(values)


def _binned(values: Any, edges: np.ndarray) -> np.ndarray:
    """Bin index of each number; a missing one gets a bin of its own (the last)."""
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return np.where(np.isnan(numbers), len(edges) + 1, np.searchsorted(edges, numbers, side="right"))


def _tvd(ref: np.ndarray, smp: np.ndarray, k: int) -> float:
    p = np.bincount(ref, minlength=k) / len(ref)
    q = np.bincount(smp, minlength=k) / len(smp)
    return float(0.5 * np.abs(p - q).sum())


def _cramers_v(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> float:
    """Cramér's V of two coded columns (0: independent, 1: one determines the other)."""
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return 0.0
    n = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / n / (min(table.shape) - 1)))
