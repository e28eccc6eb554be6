"""Table watermark: embedding with a bounded change, detection from a few hundred rows, calibration, bad input,
and the engine path with the GMM family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gensdk_gmm.plugin
import gensdk_watermark.plugin
from gensdk import Verdict
from gensdk.errors import DataError
from gensdk.testing import make_engine
from gensdk_watermark.keys import WatermarkKey
from gensdk_watermark.table import MAX_STEPS, TableMark


@pytest.fixture(scope="module")
def synthetic(gmm_model: Any) -> pd.DataFrame:
    """500 rows sampled from a GMM fitted on UCI Adult."""
    from gensdk.request import GenerationContext, Request

    request = Request(n=500, seed=3)
    context = GenerationContext(request=request, seed=3, device="cpu", dtype="float32", modality="table",
                                model_info={}, model=gmm_model)
    return gmm_model.generate(request, context)[0].frame


@pytest.fixture(scope="module")
def mark(key: WatermarkKey) -> TableMark:
    return TableMark.from_key(key)


def test_detected_from_500_rows_with_a_bounded_change(mark: TableMark, synthetic: pd.DataFrame) -> None:
    frame = synthetic.copy()
    info = mark.embed(frame)
    result = mark.detect(frame)
    assert result.detected and result.p_value < 1e-10 and result.cells >= 100
    assert list(frame.dtypes) == list(synthetic.dtypes)  # integers stay integers
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    relative = (frame[numeric] - synthetic[numeric]).abs() / synthetic[numeric].abs().replace(0, 1)
    assert float(relative.max().max()) <= MAX_STEPS * 10 ** (1 - mark.digits)
    assert info["max_relative_change"] == pytest.approx(float(relative.max().max()))
    for column in numeric:  # repeated values (point masses) are never touched
        repeated = synthetic[column].duplicated(keep=False)
        assert (frame.loc[repeated, column] == synthetic.loc[repeated, column]).all()
    text_columns = [c for c in frame.columns if c not in numeric]
    assert frame[text_columns].equals(synthetic[text_columns])


def test_survives_a_row_sample_and_a_csv_round_trip(mark: TableMark, synthetic: pd.DataFrame, tmp_path: Path) -> None:
    frame = synthetic.copy()
    mark.embed(frame)
    path = tmp_path / "t.csv"
    frame.sample(300, random_state=0).to_csv(path, index=False)
    assert mark.detect(pd.read_csv(path)).detected


def test_unmarked_tables_are_calibrated(synthetic: pd.DataFrame) -> None:
    """Under "no watermark" (500 random keys on one unmarked table) P(p < 0.01) stays near 1%."""
    rng = np.random.default_rng(0)
    p_values = np.array([TableMark(int(rng.integers(0, 2**63))).detect(synthetic).p_value for _ in range(500)])
    assert np.mean(p_values < 0.01) <= 0.025
    assert not np.any(p_values < 1e-4)


def test_wrong_key_does_not_detect(mark: TableMark, synthetic: pd.DataFrame) -> None:
    frame = synthetic.copy()
    mark.embed(frame)
    assert not TableMark.from_key(WatermarkKey(b"a different key, 16+ bytes")).detect(frame).detected


def test_floats_keep_their_grid(mark: TableMark) -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"price": np.round(rng.uniform(1000, 9000, 400), 2), "x": rng.normal(50, 10, 400)})
    before = frame.copy()
    mark.embed(frame)
    assert mark.detect(frame).detected
    assert np.allclose(frame["price"] * 100, np.round(frame["price"] * 100))  # still two decimals
    assert (np.abs(frame["x"] - before["x"]) / np.abs(before["x"]) <= MAX_STEPS * 10 ** (1 - mark.digits)).all()


def test_tables_that_cannot_carry_the_mark_are_errors(mark: TableMark) -> None:
    with pytest.raises(DataError, match="no numeric column"):
        mark.embed(pd.DataFrame({"a": ["x", "y"], "b": ["u", "v"]}))
    with pytest.raises(DataError, match="no numeric column"):
        mark.detect(pd.DataFrame({"a": ["x", "y"]}))
    with pytest.raises(DataError, match="at least 16"):
        mark.embed(pd.DataFrame({"age": np.arange(100) % 7 + 20, "n": np.arange(100) % 3}))  # only point masses
    assert mark.detect(pd.DataFrame({"age": np.arange(100) % 7})).verdict == "inconclusive"


def test_engine_marks_every_released_table(tmp_path: Path, key_file: Path, gmm_model: Any) -> None:
    config = {"policies": [{"id": "watermark-table", "options": {"key_file": str(key_file)}}]}
    with make_engine(tmp_path, plugins=[gensdk_watermark.plugin, gensdk_gmm.plugin], config=config) as engine:
        result = engine.generate(gmm_model, n=500, seed=5)
        small = engine.generate(gmm_model, n=5, seed=5)
    policy = engine.policy("watermark-table")
    assert result.verdict is Verdict.PASS
    assert policy.mark.detect(result.table()).detected
    assert result.outputs[0].metadata["watermark"]["key_id"] == policy.key.key_id
    assert small.verdict is Verdict.BLOCK and small.outputs == []  # 5 rows cannot carry it: blocked, not skipped
