"""Group fairness metrics over a million rows: gensdk_fairness's one-bincount path against fairlearn's MetricFrame.

    .venv/bin/python benchmarks/bench_fairness.py [--rows 1000000] [--repeats 5] [--sensitive sex,race] [--fairlearn-repeats 1]

Both compute the same figures from the same rows: selection rate, true and false positive rate per group and
overall, demographic-parity difference and ratio, equalized-odds difference and ratio. Timed:

* ours, sensitive columns as pandas categoricals (codes are free): `group_metrics(...)`;
* ours, sensitive columns as Python strings (each column is factorised first: the cost of hashing strings);
* fairlearn, one `MetricFrame` with the three rate metrics, then its `.difference()` and `.ratio()`;
* fairlearn, the four metric functions (`demographic_parity_difference`, ..., each builds its own MetricFrame).

Reported: median seconds of each, the ratios, and the largest absolute difference between our figures and
fairlearn's over every per-group rate and every disparity. Both run in the same process, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "policies"))

from gensdk_fairness.metrics import group_metrics  # noqa: E402

VALUES = {"sex": (["Female", "Male"], [0.33, 0.67]),
          "race": (["Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"], [0.01, 0.03, 0.09, 0.01, 0.86])}


def make_rows(n: int, columns: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Adult-like groups; labels and predictions whose rates depend on the group (so disparities are not 0)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.choice(VALUES[c][0], n, p=VALUES[c][1]) for c in columns})
    base = 0.12 + 0.2 * (frame["sex"].to_numpy() == "Male") if "sex" in columns else np.full(n, 0.25)
    y_true = (rng.random(n) < base).astype(np.int8)
    y_pred = (rng.random(n) < 0.05 + 0.7 * y_true + 0.05 * (base > 0.2)).astype(np.int8)
    return y_true, y_pred, frame


def ours(y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.DataFrame) -> dict[str, Any]:
    m = group_metrics(y_true, y_pred, sensitive)
    rates = {(label, key): float(m.rates[key][g])  # labels: values, or tuples of values (fairlearn's index)
             for g, label in enumerate(m.groups.labels) for key in ("selection_rate", "true_positive_rate", "false_positive_rate")}
    return {"rates": rates, **{k: m.disparity[k] for k in ("dp_difference", "dp_ratio", "eo_difference", "eo_ratio")}}


def fairlearn_frame(y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.DataFrame) -> dict[str, Any]:
    from fairlearn import metrics as fm

    frame = fm.MetricFrame(metrics={"selection_rate": fm.selection_rate, "true_positive_rate": fm.true_positive_rate,
                                    "false_positive_rate": fm.false_positive_rate},
                           y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    diff, ratio = frame.difference(), frame.ratio()
    rates = {(label, key): float(frame.by_group.loc[label, key]) for label in frame.by_group.index
             for key in frame.by_group.columns}
    return {"rates": rates, "dp_difference": diff["selection_rate"], "dp_ratio": ratio["selection_rate"],
            "eo_difference": max(diff["true_positive_rate"], diff["false_positive_rate"]),
            "eo_ratio": min(ratio["true_positive_rate"], ratio["false_positive_rate"])}


def fairlearn_functions(y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.DataFrame) -> dict[str, Any]:
    from fairlearn import metrics as fm

    return {name: fn(y_true, y_pred, sensitive_features=sensitive) for name, fn in (
        ("dp_difference", fm.demographic_parity_difference), ("dp_ratio", fm.demographic_parity_ratio),
        ("eo_difference", fm.equalized_odds_difference), ("eo_ratio", fm.equalized_odds_ratio))}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def largest_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    keys = ("dp_difference", "dp_ratio", "eo_difference", "eo_ratio")
    worst = max(abs(a[k] - b[k]) for k in keys)
    if "rates" in a and "rates" in b:
        assert set(a["rates"]) == set(b["rates"]), "the two paths found different groups"
        worst = max(worst, max(abs(a["rates"][k] - b["rates"][k]) for k in a["rates"]))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of our path (median reported)")
    parser.add_argument("--fairlearn-repeats", type=int, default=3, help="timed runs of each fairlearn path")
    parser.add_argument("--sensitive", default="sex,race", help="comma-separated: sex, race")
    args = parser.parse_args()
    columns = args.sensitive.split(",")

    y_true, y_pred, strings = make_rows(args.rows, columns)
    categorical = strings.astype("category")
    ours(y_true[:1000], y_pred[:1000], categorical.iloc[:1000])  # warm-up: imports, first-call costs
    fairlearn_frame(y_true[:1000], y_pred[:1000], strings.iloc[:1000])

    t_cat, r_cat = timed(lambda: ours(y_true, y_pred, categorical), args.repeats)
    t_str, r_str = timed(lambda: ours(y_true, y_pred, strings), args.repeats)
    t_frame, r_frame = timed(lambda: fairlearn_frame(y_true, y_pred, strings), args.fairlearn_repeats)
    t_funcs, r_funcs = timed(lambda: fairlearn_functions(y_true, y_pred, strings), args.fairlearn_repeats)

    groups = len(r_cat["rates"]) // 3
    print(f"{args.rows:,} rows, sensitive {columns} ({groups} groups); median of {args.repeats} (ours) / "
          f"{args.fairlearn_repeats} (fairlearn) runs\n")
    print("| path | median s | vs ours (categorical) |")
    print("|---|---:|---:|")
    for name, t in (("gensdk_fairness, categorical columns", t_cat), ("gensdk_fairness, string columns", t_str),
                    ("fairlearn MetricFrame (3 metrics + difference + ratio)", t_frame),
                    ("fairlearn dp/eo difference and ratio functions", t_funcs)):
        print(f"| {name} | {t:.4f} | x{t / t_cat:.1f} |")
    print(f"\nlargest |difference| ours vs fairlearn MetricFrame: categorical {largest_difference(r_cat, r_frame):.2e}, "
          f"strings {largest_difference(r_str, r_frame):.2e}; vs fairlearn functions {largest_difference(r_cat, r_funcs):.2e}")
    print(f"target: <= 0.050 s for 10^6 rows -> {'met' if t_cat <= 0.05 else 'MISSED'} (categorical), "
          f"{'met' if t_str <= 0.05 else 'missed'} (strings)")


if __name__ == "__main__":
    main()
