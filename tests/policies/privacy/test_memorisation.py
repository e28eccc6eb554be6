"""Memorisation: the training reference (encoding, distances, persistence), the GMM keeping one, and the
policy's block / drop / replace paths through the engine, including models saved without a reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gensdk import Verdict
from gensdk.errors import DataError, ModelLoadError
from gensdk.family import ModelFamily
from gensdk.reference import REFERENCE_NAME, TrainingReference
from gensdk.tabular import TableSchema
from gensdk.testing import make_engine


def engine_with(tmp_path: Path, plugins, **options):
    return make_engine(tmp_path, plugins=plugins, config={"policies": [{"id": "memorisation", "options": options}]})


def brute_force(reference: TrainingReference, encoded: np.ndarray) -> np.ndarray:
    train = reference.training.astype(np.float64)
    return np.array([np.sqrt(((train - row) ** 2).sum(axis=1)).min() for row in encoded.astype(np.float64)])


# -- the reference --------------------------------------------------------------------------------------------


def test_encoding_standardises_numbers_and_one_hot_encodes_categories(adult_sample) -> None:
    schema = TableSchema.infer(adult_sample)
    ref = TrainingReference.build(schema, adult_sample.iloc[100:], adult_sample.iloc[:100])
    encoded = ref.encode(adult_sample.iloc[100:])
    numeric = sum(c.numeric for c in schema.columns)
    assert encoded.dtype == np.float32
    np.testing.assert_allclose(encoded[:, :numeric].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(encoded[:, numeric:].sum(axis=1), len(schema.columns) - numeric)
    unknown = adult_sample.iloc[:1].copy()
    unknown["race"] = "never seen"
    assert ref.encode(unknown)[0, numeric:].sum() == len(schema.columns) - numeric - 1  # an all-zero block


def test_distances_match_a_brute_force_search(adult_reference, adult_sample) -> None:
    rows = adult_sample.iloc[:300].copy()
    rows["age"] = rows["age"] + 0.5
    encoded = adult_reference.encode(rows)
    expected = brute_force(adult_reference, encoded)
    np.testing.assert_allclose(adult_reference.distances_to_closest(encoded, block_bytes=1 << 16), expected, atol=2e-3)
    capped = adult_reference.distances_to_closest(encoded, cap=0.5)
    near = expected < 0.5
    assert near.any() and (~near).any()
    np.testing.assert_allclose(capped[near], expected[near], atol=1e-4)  # the grouped search is exact
    assert np.isinf(capped[~near]).all()


def test_exact_copies_are_recognised(adult_reference, adult_sample) -> None:
    copies = adult_sample.iloc[200:260]
    fresh = adult_sample.iloc[:60].copy()
    fresh["fnlwgt"] = fresh["fnlwgt"] + 1
    for frame, expected in ((copies, True), (fresh, False)):
        encoded = adult_reference.encode(frame)
        dcr = adult_reference.distances_to_closest(encoded, cap=0.1)
        assert adult_reference.exact_copies(encoded, dcr).all() == expected


def test_reference_round_trips_through_a_directory(adult_reference, tmp_path) -> None:
    adult_reference.save(tmp_path)
    loaded = TrainingReference.load(tmp_path)
    np.testing.assert_array_equal(loaded.training, adult_reference.training)
    np.testing.assert_array_equal(loaded.holdout_dcr, adult_reference.holdout_dcr)
    assert loaded.holdout_quantile(0.05) == adult_reference.holdout_quantile(0.05)
    assert TrainingReference.load(tmp_path / "nothing-here") is None


def test_damaged_reference_is_refused(adult_reference, tmp_path) -> None:
    adult_reference.save(tmp_path)
    data = (tmp_path / REFERENCE_NAME).read_bytes()
    (tmp_path / REFERENCE_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupted"):
        TrainingReference.load(tmp_path)


def test_rows_missing_a_column_are_a_data_error(adult_reference, adult_sample) -> None:
    with pytest.raises(DataError, match="income"):
        adult_reference.encode(adult_sample.drop(columns=["income"]))


# -- the GMM keeps a reference --------------------------------------------------------------------------------


def test_gmm_holds_out_rows_and_keeps_a_reference(gmm_model, adult_sample, tmp_path) -> None:
    ref = gmm_model.training_reference()
    assert len(ref.holdout) == 200 and len(ref.training) == 1800
    assert gmm_model.metadata["holdout_rows"] == 200 and gmm_model.metadata["training_rows"] == 2000
    loaded = type(gmm_model).load(gmm_model.save(tmp_path / "gmm"))
    np.testing.assert_array_equal(loaded.training_reference().holdout, ref.holdout)


def test_held_out_rows_are_not_fitted(adult_sample) -> None:
    from gensdk_gmm.model import GMMFamily

    small = adult_sample.iloc[:400]
    model = GMMFamily({"n_components": 1, "max_iter": 2, "holdout_fraction": 0.25})
    train, holdout = model._split_holdout(small)
    assert len(train) == 300 and len(holdout) == 100
    model.fit(small)
    numeric = [c.name for c in model.schema.columns if c.numeric]
    np.testing.assert_allclose(model.params["center"], train[numeric].mean().to_numpy())  # scaled on EM rows only


def test_gmm_without_enough_rows_keeps_no_reference(adult_sample, tmp_path) -> None:
    from gensdk_gmm.model import GMMFamily

    model = GMMFamily({"n_components": 1, "max_iter": 2}).fit(adult_sample.iloc[:100])  # 10 held out < 30
    assert model.training_reference() is None
    model.save(tmp_path / "m")
    assert not (tmp_path / "m" / REFERENCE_NAME).exists()
    assert GMMFamily({"n_components": 1, "max_iter": 2, "holdout_fraction": 0}).fit(adult_sample).training_reference() is None


def test_families_keep_no_reference_by_default() -> None:
    from gensdk.testing import MockFamily

    assert ModelFamily.training_reference(MockFamily()) is None


# -- the policy through the engine ----------------------------------------------------------------------------


def test_well_trained_gmm_passes(tmp_path, privacy_plugins, gmm_model) -> None:
    with engine_with(tmp_path, privacy_plugins) as engine:
        result = engine.generate(gmm_model, n=1000, seed=3)
    assert result.verdict is Verdict.PASS
    finding = result.findings[0]
    assert finding.details["rows"] == 1000
    assert finding.details["flagged"] <= 50  # fresh data would have 5% flagged
    assert len(result.table()) == 1000  # replaced, not dropped


def test_copying_generator_is_blocked(tmp_path, privacy_plugins, copy_family) -> None:
    with engine_with(tmp_path, privacy_plugins, action="block") as engine:
        result = engine.generate(copy_family, n=300, seed=1)
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    details = result.findings[0].details
    assert details["flagged"] == details["exact_copies"] == 300


def test_noisy_copies_are_flagged_like_copies(tmp_path, privacy_plugins, adult_sample, adult_reference, copy_family_factory) -> None:
    family = copy_family_factory(adult_sample.iloc[200:].reset_index(drop=True), adult_reference, noise=0.01)
    with engine_with(tmp_path, privacy_plugins, action="block") as engine:
        result = engine.generate(family, n=500, seed=1)
    details = result.findings[0].details
    assert result.verdict is Verdict.BLOCK
    assert details["flagged"] >= 495 and details["exact_copies"] == 0


def test_drop_removes_flagged_rows(tmp_path, privacy_plugins, adult_sample, adult_reference, gmm_model, copy_family_factory) -> None:
    ref = gmm_model.training_reference()
    training = gmm_model._split_holdout(adult_sample)[0]
    family = copy_family_factory(training, ref, copy_share=0.1, fallback=gmm_model)
    with engine_with(tmp_path, privacy_plugins, action="drop") as engine:
        result = engine.generate(family, n=500, seed=2)
    details = result.findings[0].details
    assert result.verdict is Verdict.PASS and details["exact_copies"] == 50
    assert details["dropped"] == details["flagged"] and len(result.table()) == 500 - details["dropped"]
    assert _flagged(ref, result.table()) == 0


def test_replace_swaps_flagged_rows_for_fresh_checked_samples(tmp_path, privacy_plugins, adult_sample, gmm_model, copy_family_factory) -> None:
    ref = gmm_model.training_reference()
    family = copy_family_factory(gmm_model._split_holdout(adult_sample)[0], ref, copy_share=0.1, fallback=gmm_model)
    with engine_with(tmp_path, privacy_plugins, action="replace") as engine:
        result = engine.generate(family, n=500, seed=2)
        again = engine.generate(copy_family_factory(gmm_model._split_holdout(adult_sample)[0], ref, copy_share=0.1, fallback=gmm_model), n=500, seed=2)
    details = result.findings[0].details
    assert details["flagged"] >= 50 and details["replaced"] + details["dropped"] == details["flagged"]
    assert details["rounds"] >= 1 and family.calls == 1 + details["rounds"]
    assert len(result.table()) == 500 - details["dropped"]
    assert _flagged(ref, result.table()) == 0
    assert list(result.table().dtypes) == list(adult_sample.dtypes)
    assert result.table().equals(again.table())  # replacement rows are seeded from the request seed


def test_systematic_copying_is_blocked_even_when_replacing(tmp_path, privacy_plugins, copy_family) -> None:
    with engine_with(tmp_path, privacy_plugins, action="replace", max_flagged_fraction=0.5) as engine:
        result = engine.generate(copy_family, n=200, seed=1)
    assert result.verdict is Verdict.BLOCK
    assert "max_flagged_fraction" in result.findings[0].message


def test_rows_still_close_after_the_last_round_are_dropped(tmp_path, privacy_plugins, adult_sample, adult_reference, copy_family_factory) -> None:
    family = copy_family_factory(adult_sample.iloc[200:].reset_index(drop=True), adult_reference)  # copies every time
    with engine_with(tmp_path, privacy_plugins, action="replace", max_rounds=2, max_flagged_fraction=1.0) as engine:
        result = engine.generate(family, n=40, seed=1)
    details = result.findings[0].details
    assert details == {**details, "replaced": 0, "rounds": 2, "dropped": 40, "released_rows": 0}
    assert family.calls == 3


def test_model_without_reference_fails_closed(tmp_path, privacy_plugins, adult_sample) -> None:
    from gensdk_gmm.model import GMMFamily

    model = GMMFamily({"n_components": 1, "max_iter": 2, "holdout_fraction": 0}).fit(adult_sample.iloc[:300])
    with engine_with(tmp_path, privacy_plugins) as engine:
        result = engine.generate(model, n=10, seed=1)
    outcome = result.outcomes[0]
    assert result.verdict is Verdict.BLOCK and outcome.status == "error"
    assert "without a training reference" in outcome.error and "missing_reference='allow'" in outcome.error
    with engine_with(tmp_path, privacy_plugins, missing_reference="allow") as engine:
        allowed = engine.generate(model, n=10, seed=1)
    assert allowed.verdict is Verdict.PASS and allowed.findings[0].code == "memorisation-unchecked"


def _flagged(ref: TrainingReference, frame) -> int:
    threshold = ref.holdout_quantile(0.05)
    encoded = ref.encode(frame)
    dcr = ref.distances_to_closest(encoded, cap=max(threshold, 1e-2))
    return int(((dcr < threshold) | ref.exact_copies(encoded, dcr)).sum())
