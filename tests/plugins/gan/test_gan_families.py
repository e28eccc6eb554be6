"""The GAN families: conformance, conditional generation, diagnostics, training controls and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gensdk_gan.plugin
from gensdk.errors import ConfigError, DataError, RequestError
from gensdk.family import MANIFEST_NAME
from gensdk.images import ImageData
from gensdk.testing import make_engine
from gensdk.testing.conformance import FamilyConformance
from gensdk.verdicts import Verdict
from gensdk_gan import ImageGANFamily, TableGANFamily

TINY = dict(epochs=1, batch_size=100, pac=10, noise_dim=8, generator_dims=[16], critic_dims=[16], max_modes=2, diagnostic_rows=0)


class TestTableGANConformance(FamilyConformance):
    family = TableGANFamily
    plugin = gensdk_gan.plugin
    request = {"n": 40}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, table_gan):  # type: ignore[override]
        return table_gan


class TestImageGANConformance(FamilyConformance):
    family = ImageGANFamily
    plugin = gensdk_gan.plugin
    request = {"n": 4}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, image_gan):  # type: ignore[override]
        return image_gan


# -- tables ---------------------------------------------------------------------------------------------------

def test_rows_keep_the_training_columns_dtypes_and_ranges(table_gan, adult500) -> None:
    frame = table_gan.sample(300, seed=1)
    assert list(frame.columns) == list(adult500.columns)
    assert frame["age"].dtype == adult500["age"].dtype
    assert frame["age"].between(adult500["age"].min(), adult500["age"].max()).all()
    assert set(frame["income"]) <= set(adult500["income"])
    assert table_gan.schema.column("income").target and table_gan.schema.column("sex").sensitive


def test_conditions_hold_on_every_row_through_the_engine(table_gan, tmp_path: Path) -> None:
    with make_engine(tmp_path, plugins=[gensdk_gan.plugin]) as engine:
        result = engine.generate(table_gan, {"n": 60, "seed": 2, "conditions": {"income": ">50K", "sex": "Female"}})
    table = result.table()
    assert result.verdict is Verdict.PASS and len(table) == 60
    assert (table["income"] == ">50K").all() and (table["sex"] == "Female").all()


@pytest.mark.parametrize(("conditions", "message"), [
    ({"salary": ">50K"}, "unknown column 'salary'"),
    ({"income": "huge"}, "column 'income' has no category 'huge'"),
    ({"age": 30}, "condition on integer column 'age'"),
])
def test_bad_conditions_are_request_errors_naming_them(table_gan, tmp_path: Path, conditions, message) -> None:
    with make_engine(tmp_path, plugins=[gensdk_gan.plugin]) as engine, pytest.raises(RequestError, match=message):
        engine.generate(table_gan, {"n": 5, "conditions": conditions})


def test_coverage_diagnostic_is_reported_and_saved(table_gan, tmp_path: Path) -> None:
    coverage = table_gan.metadata["coverage"]
    assert 0 < coverage["mean_coverage"] <= 1
    assert coverage["columns"]["sex"]["categories"] == 2
    assert {"covered", "not_generated", "total_variation"} <= set(coverage["columns"]["education"])
    saved = json.loads((table_gan.save(tmp_path / "m") / MANIFEST_NAME).read_text())
    assert saved["training"]["coverage"] == json.loads(json.dumps(coverage))


def test_a_training_reference_is_kept_for_the_memorisation_policy(table_gan, tmp_path: Path) -> None:
    ref = table_gan.training_reference()
    assert ref is not None and len(ref.holdout) == 50 and len(ref.training) == 450
    loaded = TableGANFamily.load(table_gan.save(tmp_path / "m"))
    assert loaded.training_reference() is not None and len(loaded.training_reference().training) == 450


def test_time_budget_and_early_stopping_end_training(adult500) -> None:
    budget = TableGANFamily({**TINY, "epochs": 50, "time_budget_s": 0.01}).fit(adult500)
    assert budget.metadata["stopped"] == "time budget" and budget.metadata["epochs_run"] == 1
    seen = []
    early = TableGANFamily({**TINY, "epochs": 50, "patience": 1}).fit(adult500, progress=lambda d, t, m: seen.append((d, t)))
    meta = early.metadata
    assert meta["stopped"] == "early stopping" and meta["epochs_run"] == meta["best_epoch"] + 1 < 50
    assert seen[0] == (1, 50) and len(seen) == meta["epochs_run"]


def test_same_seed_same_model(adult500) -> None:
    first = TableGANFamily(TINY).fit(adult500.head(200)).sample(20, seed=3)
    again = TableGANFamily(TINY).fit(adult500.head(200)).sample(20, seed=3)
    assert first.equals(again)


def test_missing_cells_are_learned_and_restored(adult500) -> None:
    frame = adult500.head(300).copy()
    frame.loc[frame.index[::5], "occupation"] = None
    frame.loc[frame.index[::7], "age"] = np.nan
    model = TableGANFamily(TINY).fit(frame)
    out = model.sample(500, seed=0)
    assert model.schema.column("age").kind == "integer" and model.schema.column("age").missing == 43
    assert out["occupation"].isna().any() and out["age"].isna().any()
    assert out["age"].dropna().eq(out["age"].dropna().round()).all()


@pytest.mark.parametrize(("frame", "message"), [
    (lambda a: a.head(1), "1 rows are too few"),
    (lambda a: a.iloc[:0], "is empty"),
    (lambda a: a.head(100).assign(extra=np.nan), "column 'extra' has no values"),
    (lambda a: a.head(100).assign(const=7), "column 'const' holds one value"),
])
def test_bad_tables_are_data_errors_naming_the_problem(adult500, frame, message) -> None:
    with pytest.raises(DataError, match=message):
        TableGANFamily(TINY).fit(frame(adult500))


def test_pack_size_must_divide_the_batch(adult500) -> None:
    with pytest.raises(ConfigError, match="multiple of pac"):
        TableGANFamily({**TINY, "batch_size": 105}).fit(adult500.head(200))
    with pytest.raises(ConfigError, match="no_such"):
        TableGANFamily({"no_such": 1})


# -- images ---------------------------------------------------------------------------------------------------

def test_class_conditional_images_and_share_diagnostic(image_gan, tmp_path: Path) -> None:
    meta = image_gan.metadata
    assert set(meta["class_share"]) == {str(i) for i in range(10)}
    assert abs(sum(meta["class_share"].values()) - 1) < 1e-3 and "conditional_agreement" in meta
    with make_engine(tmp_path, plugins=[gensdk_gan.plugin]) as engine:
        result = engine.generate(image_gan, {"n": 3, "seed": 1, "conditions": {"class": 7}})
        assert [tuple(o.pixels.shape) for o in result.outputs] == [(1, 8, 8)] * 3
        assert all(0 <= float(o.pixels.min()) and float(o.pixels.max()) <= 1 for o in result.outputs)
        with pytest.raises(RequestError, match="unknown class '12'"):
            engine.generate(image_gan, {"n": 1, "conditions": {"class": 12}})
        with pytest.raises(RequestError, match="unknown condition 'colour'"):
            engine.generate(image_gan, {"n": 1, "conditions": {"colour": "red"}})


def test_image_folders_load_with_classes_and_mixed_sizes_are_named(tmp_path: Path) -> None:
    from PIL import Image

    from gensdk.images import load_image_folder

    for label in ("cat", "dog"):
        (tmp_path / "ok" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 12), 40 * i, np.uint8)).save(tmp_path / "ok" / label / f"{i}.png")
    data = load_image_folder(tmp_path / "ok")
    assert data.classes == ["cat", "dog"] and tuple(data.pixels.shape) == (6, 1, 8, 12)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "ok" / "dog" / "big.png")
    with pytest.raises(DataError, match=r"big\.png is 16x16 greyscale but .*0\.png is 12x8 greyscale"):
        load_image_folder(tmp_path / "ok")
    (tmp_path / "odd").mkdir()
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "odd" / "a.png")
    with pytest.raises(DataError, match="multiples of 4"):
        load_image_folder(tmp_path / "odd")


def test_an_image_gan_trains_from_arrays() -> None:
    pixels = torch.rand(16, 3, 4, 4)
    model = ImageGANFamily({"epochs": 1, "batch_size": 8, "width": 4, "noise_dim": 4, "diagnostic_samples": 20})
    model.fit((pixels, ["a"] * 8 + ["b"] * 8))
    assert model.classes == ["a", "b"] and tuple(model.sample(2, seed=0, label=1).shape) == (2, 3, 4, 4)
    assert isinstance(ImageData(pixels, torch.zeros(16, dtype=torch.int64), ["x"]), ImageData)


def test_dates_are_modelled_and_come_back_as_dates(adult500) -> None:
    import pandas as pd

    frame = adult500.head(200)[["age", "sex"]].assign(
        joined=pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(200) % 300, unit="D"))
    model = TableGANFamily(TINY).fit(frame)
    out = model.sample(50, seed=0)
    assert model.schema.column("joined").kind == "datetime" and out["joined"].dtype == frame["joined"].dtype
    assert out["joined"].between(frame["joined"].min(), frame["joined"].max()).all()
    assert (out["joined"] == out["joined"].dt.normalize()).all()  # whole days, like the training dates


def test_the_memorisation_policy_checks_gan_rows_against_the_kept_reference(table_gan, tmp_path: Path) -> None:
    import importlib.util
    import sys

    if importlib.util.find_spec("gensdk_privacy") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "policies"))
    from gensdk_privacy.memorisation import MemorisationPolicy

    with make_engine(tmp_path, plugins=[gensdk_gan.plugin], policies=[MemorisationPolicy({"action": "drop", "max_flagged_fraction": 1.0})]) as engine:
        result = engine.generate(table_gan, {"n": 200, "seed": 0})
    outcome = next(o for o in result.outcomes if o.policy_id == "memorisation")
    assert outcome.status != "error", outcome.error
    assert result.outputs and 0 < len(result.table()) <= 200


# -- the declared target: label-first conditional vectors, auxiliary classifier -------------------------------

def test_the_target_gets_its_share_of_conditional_vectors_and_generation_is_label_first(table_gan, adult500) -> None:
    cond = table_gan.cond
    target = [c.name for c, _ in cond.columns].index("income")
    assert cond.focus == (target, 0.5)
    vectors, entry, rows = cond.sample_train(4000, np.random.default_rng(0))
    on_target = (entry >= cond.offsets[target]) & (entry < cond.offsets[target + 1])
    # half asked for the target, plus the target's 1-in-9 share of the uniform other half
    assert 0.5 + 0.5 / len(cond.columns) - 0.03 < on_target.mean() < 0.5 + 0.5 / len(cond.columns) + 0.03
    chosen = entry[on_target] - cond.offsets[target]
    assert set(chosen) == {0, 1}
    from gensdk.tabular_transform import split_holdout

    train, _ = split_holdout(adult500, 0.1, 0)  # the rows the fixture trained on
    span = cond.columns[target][1]
    labels = table_gan.transform.encode(train)[:, span.start : span.stop].argmax(1)
    assert np.array_equal(labels[rows[on_target]], chosen)  # real rows shown beside a label condition have that label
    unconditional = cond.sample_original(4000, torch.Generator().manual_seed(0)).numpy()
    shares = unconditional[:, cond.offsets[target] : cond.offsets[target + 1]].mean(0)
    assert unconditional.sum(1).tolist() == [1.0] * 4000  # every row asks for an income category
    assert abs(shares[list(cond.columns[target][0].categories).index(">50K")] - (adult500["income"] == ">50K").mean()) < 0.03


def test_without_a_share_conditional_vectors_are_ctgans(adult500) -> None:
    model = TableGANFamily({**TINY, "target": "income", "target_share": 0, "classifier_weight": 0}).fit(adult500.head(200))
    assert model.cond.focus is None and "classifier" not in model.metadata["final_losses"]
    unconditional = model.cond.sample_original(3000, torch.Generator().manual_seed(0)).numpy()
    target = [c.name for c, _ in model.cond.columns].index("income")
    on_target = unconditional[:, model.cond.offsets[target] : model.cond.offsets[target + 1]].sum(1).mean()
    assert abs(on_target - 1 / len(model.cond.columns)) < 0.03


def test_the_auxiliary_classifier_trains_with_a_declared_target_and_never_sees_the_label(table_gan, adult500) -> None:
    from gensdk_gan.model import TargetClassifier

    assert table_gan.metadata["final_losses"]["classifier"] > 0
    assert set(table_gan.net.keys()) == {"generator", "critic"}  # a training aid: not saved with the model
    assert "classifier" not in TableGANFamily(TINY).fit(adult500.head(200)).metadata["final_losses"]  # no target
    span = table_gan.transform.span_of("income")
    classifier = TargetClassifier(table_gan.transform.width, span, [16]).eval()
    rows = torch.as_tensor(table_gan.transform.encode(adult500.head(50)))
    flipped = rows.clone()
    flipped[:, span.start : span.stop] = flipped[:, span.start : span.stop].flip(1)  # every label swapped
    assert torch.equal(classifier(rows), classifier(flipped)) and torch.equal(classifier.labels(flipped), 1 - classifier.labels(rows))


def test_dp_conditional_vectors_describe_the_rows_themselves(table_gan, adult500) -> None:
    rows = torch.as_tensor(table_gan.transform.encode(adult500.head(300)))
    cond = table_gan.cond.from_rows(rows, np.random.default_rng(1))
    assert cond.sum(1).tolist() == [1.0] * 300
    for j, (codec, span) in enumerate(table_gan.cond.columns):
        block = cond[:, table_gan.cond.offsets[j] : table_gan.cond.offsets[j + 1]]
        asked = block.sum(1) > 0
        assert torch.equal(block[asked].argmax(1), rows[asked, span.start : span.stop].argmax(1)), codec.name
