"""Intervals and p-values: the stratified count bootstrap behaves like resampling rows, small groups get no
interval (and a note saying why), and the permutation test separates real gaps from noise."""

from __future__ import annotations

import numpy as np
import pytest

from gensdk_fairness.groups import encode_groups
from gensdk_fairness.metrics import GroupMetrics, cell_counts
from gensdk_fairness.stats import count_intervals, mean_disparity, share_intervals


def _cells(sizes: dict[str, int], rates: dict[str, float], seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    groups = np.concatenate([[g] * n for g, n in sizes.items()])
    y = (rng.random(len(groups)) < np.array([rates[g] for g in groups])).astype(np.int8)
    encoded = encode_groups(groups)
    return cell_counts(encoded, y, y), encoded.names


def test_count_bootstrap_matches_resampling_rows() -> None:
    """Within-group resampling of rows gives a binomial spread of each group's rate: mean p, sd sqrt(p(1-p)/n)."""
    cells, names = _cells({"a": 400, "b": 900}, {"a": 0.2, "b": 0.5})
    boot = count_intervals(cells, names, n_boot=4000, seed=1)
    rates = GroupMetrics(encode_groups(np.array(["a"] * 400 + ["b"] * 900)), cells).rates["selection_rate"]
    for g, n in ((0, 400), (1, 900)):
        draws = boot.draws["selection_rate"][:, g]
        assert abs(draws.mean() - rates[g]) < 0.003
        assert abs(draws.std() / np.sqrt(rates[g] * (1 - rates[g]) / n) - 1) < 0.08


def test_interval_holds_the_estimate_and_narrows_with_more_rows() -> None:
    widths = []
    for n in (200, 5000):
        cells, names = _cells({"a": n, "b": n}, {"a": 0.2, "b": 0.4}, seed=n)
        boot = count_intervals(cells, names, n_boot=1000)
        gap = GroupMetrics(encode_groups(np.repeat(["a", "b"], n)), cells).demographic_parity_difference
        low, high = boot.disparity_interval("dp_difference", 0.95)
        assert low <= gap <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 3


def test_small_groups_get_no_interval_and_a_note() -> None:
    cells, names = _cells({"big": 500, "tiny": 12}, {"big": 0.3, "tiny": 0.3})
    boot = count_intervals(cells, names, n_boot=200, min_rows=30)
    assert boot.group_interval("selection_rate", 1, "tiny", 0.95) is None
    assert boot.group_interval("selection_rate", 0, "big", 0.95) is not None
    assert boot.disparity_interval("dp_difference", 0.95) is None
    assert any("'tiny' (12)" in n and "fewer than 30 rows" in n for n in boot.notes)


def test_permutation_test_finds_a_real_gap_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    gap = mean_disparity({"a": rng.normal(0.0, 1, 80), "b": rng.normal(0.8, 1, 80)}, n_permutations=1000)
    noise = mean_disparity({"a": rng.normal(0, 1, 80), "b": rng.normal(0, 1, 80)}, n_permutations=1000)
    assert gap.p_value < 0.01 and gap.disparity_interval[0] > 0.3
    assert noise.p_value > 0.05
    assert gap.disparity == pytest.approx(abs(gap.means[1] - gap.means[0]))


def test_constant_scores_have_p_one_and_a_point_interval() -> None:
    result = mean_disparity({"a": np.zeros(40), "b": np.zeros(40)})
    assert result.p_value == 1.0 and result.mean_intervals == [[0.0, 0.0], [0.0, 0.0]] and result.disparity == 0.0


def test_small_text_groups_are_named() -> None:
    result = mean_disparity({"a": np.arange(50.0), "b": np.arange(5.0)}, min_rows=30, what="gender / length: ")
    assert result.mean_intervals[1] is None and result.disparity_interval is None
    assert "gender / length: no confidence interval for group(s) 'b' (5)" in result.notes[0]


def test_wilson_intervals() -> None:
    low, high = share_intervals([50, 50])[0]  # 50 of 100
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
