"""The VAE families: conformance, beta, anomaly scores, imputation (direct and through the engine), CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gensdk_vae.plugin
from gensdk.errors import DataError, RequestError
from gensdk.testing import make_engine
from gensdk.testing.conformance import FamilyConformance
from gensdk.verdicts import Verdict
from gensdk_vae import ImageVAEFamily, TableVAEFamily


class TestTableVAEConformance(FamilyConformance):
    family = TableVAEFamily
    plugin = gensdk_vae.plugin
    request = {"n": 40}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, table_vae):  # type: ignore[override]
        return table_vae


class TestImageVAEConformance(FamilyConformance):
    family = ImageVAEFamily
    plugin = gensdk_vae.plugin
    request = {"n": 4}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, image_vae):  # type: ignore[override]
        return image_vae


def test_conditions_and_coverage(table_vae) -> None:
    rows = table_vae.sample(50, seed=4, conditions={"income": ">50K"})
    assert len(rows) == 50 and (rows["income"] == ">50K").all()
    assert table_vae.metadata["coverage"]["columns"]["income"]["categories"] == 2
    assert table_vae.metadata["validation_loss"] < np.inf


def test_beta_trades_reconstruction_for_regularisation(adult500) -> None:
    tight = TableVAEFamily({"epochs": 3, "batch_size": 100, "latent_dim": 8, "hidden_dims": [32], "beta": 0.05, "diagnostic_rows": 0, "learning_rate": 3e-3}).fit(adult500)
    loose = TableVAEFamily({"epochs": 3, "batch_size": 100, "latent_dim": 8, "hidden_dims": [32], "beta": 5.0, "diagnostic_rows": 0, "learning_rate": 3e-3}).fit(adult500)
    assert tight.metadata["final_losses"]["kl"] > loose.metadata["final_losses"]["kl"]
    assert tight.metadata["final_losses"]["reconstruction"] < loose.metadata["final_losses"]["reconstruction"]


def test_anomaly_scores_rank_corrupted_rows_higher(table_vae, adult500) -> None:
    normal = adult500.head(100)
    odd = normal.copy()
    odd["age"], odd["hr_per_week"], odd["capital_gain"] = 90, 99, 99999
    odd["education"], odd["country"] = adult500["education"].value_counts().index[-1], adult500["country"].value_counts().index[-1]
    scores_normal, scores_odd = table_vae.anomaly_scores(normal), table_vae.anomaly_scores(odd)
    assert scores_normal.shape == (100,) and np.isfinite(scores_normal).all()
    assert (scores_odd > scores_normal).mean() > 0.9
    assert np.array_equal(table_vae.anomaly_scores(normal), scores_normal)  # seeded


def test_anomaly_scores_name_unknown_categories(table_vae, adult500) -> None:
    rows = adult500.head(3).copy()
    rows.loc[0, "sex"] = "Robot"
    with pytest.raises(DataError, match="column 'sex' has the category 'Robot'"):
        table_vae.anomaly_scores(rows)


def test_imputation_fills_only_missing_cells_in_training_types(table_vae, adult500) -> None:
    rows = adult500.head(40).copy()
    rows["age"] = rows["age"].astype(float)
    rows.loc[rows.index[::3], "age"] = np.nan
    rows.loc[rows.index[::4], "education"] = None
    filled = table_vae.impute(rows)
    assert filled.isna().sum().sum() == 0 and filled["age"].dtype == adult500["age"].dtype
    kept = rows["age"].notna()
    assert (filled.loc[kept, "age"] == rows.loc[kept, "age"]).all()
    assert filled["education"].isin(set(adult500["education"])).all()
    assert filled["age"].between(adult500["age"].min(), adult500["age"].max()).all()


def test_imputation_goes_through_the_engine_and_audit(table_vae, adult500, tmp_path: Path) -> None:
    rows = adult500.head(30).astype(object)
    rows.loc[rows.index[::2], "occupation"] = None
    records = rows.where(rows.notna(), None).to_dict(orient="records")
    with make_engine(tmp_path, plugins=[gensdk_vae.plugin]) as engine:
        result = engine.generate(table_vae, {"n": 30, "seed": 0, "params": {"impute": records}})
        assert result.verdict is Verdict.PASS and result.audit_record_id
        with pytest.raises(RequestError, match="holds 30 rows but n is 5"):
            engine.generate(table_vae, {"n": 5, "params": {"impute": records}})
    table = result.table()
    assert len(table) == 30 and table["occupation"].notna().all()


def test_image_vae_anomaly_scores_and_labels(image_vae) -> None:
    from gensdk.images import load_digits

    digits = load_digits()
    held = digits.pixels[-100:]
    noise = torch.ones(100, 1, 8, 8)  # saturated: nothing like a digit
    normal, odd = image_vae.anomaly_scores(held), image_vae.anomaly_scores(noise)
    assert normal.shape == (100,) and (odd.mean() > normal.mean())
    labels = digits.labels[-100:]
    labelled = image_vae.anomaly_scores(held, labels=labels)
    # Summing the class out costs at most -log p(true class) over scoring with the true class.
    assert (normal <= labelled - np.log(image_vae.class_prior.numpy()[labels.numpy()]) + 0.5).all()
    with pytest.raises(DataError, match=r"trained on \(1, 8, 8\)"):
        image_vae.anomaly_scores(torch.rand(2, 1, 12, 12))


# -- the commands ---------------------------------------------------------------------------------------------

def test_train_generate_anomaly_impute_and_augment_on_the_command_line(gensdk, adult500, tmp_path: Path) -> None:
    data = tmp_path / "adult.csv"
    adult500.head(300).to_csv(data, index=False)
    tiny = ["--epochs", "2", "--batch-size", "100"]
    code, out, err = gensdk("train", "vae", "--data", data, "--out", tmp_path / "vae", *tiny, "--target", "income")
    assert code == 0, err
    assert "saved" in out and "category coverage" in out

    code, out, err = gensdk("anomaly", tmp_path / "vae", data, "--out", tmp_path / "scores.csv", "--top", "3")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "scores.csv")) == 300

    gaps = adult500.head(20).copy()
    gaps.loc[gaps.index[::2], "occupation"] = None
    gaps.to_csv(tmp_path / "gaps.csv", index=False)
    code, out, err = gensdk("impute", tmp_path / "vae", tmp_path / "gaps.csv", "--out", tmp_path / "filled.csv")
    assert code == 0, err
    assert pd.read_csv(tmp_path / "filled.csv")["occupation"].notna().all() and "10 missing cells filled" in out

    code, out, err = gensdk("augment", data, "--target", "income", "--balance", "--model", tmp_path / "vae",
                            "--out", tmp_path / "balanced.csv", "--flag-column", "synthetic")
    assert code == 0, err
    balanced = pd.read_csv(tmp_path / "balanced.csv")
    counts = balanced["income"].value_counts()
    assert counts.iloc[0] == counts.iloc[1] and balanced["synthetic"].sum() == counts.max() * 2 - 300

    code, out, err = gensdk("augment", data, "--target", "salary", "--balance", "--model", tmp_path / "vae", "--out", tmp_path / "x.csv")
    assert code == 2 and "target column 'salary' is not in" in err


def test_train_gan_on_images_from_the_command_line(gensdk, tmp_path: Path) -> None:
    code, out, err = gensdk("train", "gan", "--data", "digits", "--out", tmp_path / "gan", "--epochs", "1", "--batch-size", "256")
    assert code == 0, err
    assert "smallest class share" in out
    code, out, err = gensdk("generate", tmp_path / "gan", "--n", "2", "--condition", "class=3", "--out", tmp_path / "png")
    assert code == 0, err
    assert len(list((tmp_path / "png").glob("*.png"))) == 2
