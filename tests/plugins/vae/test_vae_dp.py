"""Differentially private training of the VAE families: the whole model under DP-SGD, ε spent within the target,
recorded with the model and in the audit trail; nothing computed from training rows outside the accountant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import gensdk_vae.plugin
from gensdk.family import MANIFEST_NAME
from gensdk.testing import make_engine
from gensdk.verdicts import Verdict
from gensdk_vae import ImageVAEFamily, TableVAEFamily
from tiny_models import TINY_TABLE_VAE, audit_body, digits_subset


@pytest.fixture(scope="module")
def dp_table_vae(adult500):
    return TableVAEFamily({**TINY_TABLE_VAE, "epochs": 2, "diagnostic_rows": 200, "dp_epsilon": 2.0, "dp_delta": 1e-6}).fit(adult500)


def test_dp_table_vae_spends_at_most_its_budget(dp_table_vae) -> None:
    dp = dp_table_vae.metadata["differential_privacy"]
    assert 0.9 * 2.0 < dp["epsilon"] <= 2.0 and dp["delta"] == 1e-6 and dp["steps"] == 10
    assert dp_table_vae.identity()["differential_privacy"]["epsilon"] == dp["epsilon"]


def test_dp_mode_fixes_the_noise_width_and_picks_a_small_network(dp_table_vae, table_vae) -> None:
    from gensdk_vae.family import DP_NOISE_WIDTH

    # the learned width's gradient (1/sigma^3) would swamp every row's clipped gradient: fixed under DP
    assert bool((dp_table_vae.net.sigma == DP_NOISE_WIDTH).all()) and not bool((table_vae.net.sigma == 0.1).all())
    small = TableVAEFamily({"dp_epsilon": 1}).options
    assert (small.latent_dim, small.hidden_dims) == (16, [64])
    assert TableVAEFamily({"dp_epsilon": 1, "latent_dim": 32}).options.latent_dim == 32
    assert TableVAEFamily({}).options.latent_dim == 128


def test_no_per_category_latent_statistics_are_kept_under_dp(dp_table_vae, table_vae) -> None:
    # Without DP the VAE keeps where each category's training rows sit in latent space; those averages of
    # training rows are outside the accountant, so a DP model keeps the prior and filters by rejection.
    assert torch.count_nonzero(table_vae.net.cond_mean) > 0
    assert torch.count_nonzero(dp_table_vae.net.cond_mean) == 0 and bool((dp_table_vae.net.cond_std == 1).all())
    rows = dp_table_vae.sample(40, seed=3, conditions={"sex": "Female"})
    assert len(rows) == 40 and (rows["sex"] == "Female").all()


def test_the_audit_record_of_imputed_rows_carries_epsilon(dp_table_vae, adult500, tmp_path: Path) -> None:
    saved = dp_table_vae.save(tmp_path / "model")
    spent = json.loads((saved / MANIFEST_NAME).read_text())["training"]["differential_privacy"]["epsilon"]
    gaps = adult500.head(5).astype(object)
    gaps.loc[[0, 2], "occupation"] = None
    with make_engine(tmp_path, plugins=[gensdk_vae.plugin]) as engine:
        model = engine.load_model(saved)
        sampled = engine.generate(model, {"n": 20, "seed": 0})
        imputed = engine.generate(model, {"n": 5, "seed": 0, "params": {"impute": gaps.to_dict(orient="records")}})
    assert sampled.verdict is Verdict.PASS and imputed.verdict is Verdict.PASS
    assert imputed.table()["occupation"].notna().all()
    for result in (sampled, imputed):
        recorded = audit_body(tmp_path / "audit.db", result.audit_record_id)["model"]
        assert recorded["differential_privacy"] == {"epsilon": spent, "delta": 1e-6, "accountant": "rdp", "max_grad_norm": 1.0}


def test_dp_image_vae_trains_scores_and_reports(tmp_path: Path) -> None:
    model = ImageVAEFamily({"epochs": 2, "batch_size": 32, "latent_dim": 4, "width": 8, "diagnostic_samples": 50,
                            "dp_epsilon": 4.0, "dp_max_grad_norm": 5.0}).fit(digits_subset())
    dp = model.metadata["differential_privacy"]
    assert 0.9 * 4.0 < dp["epsilon"] <= 4.0 and dp["max_grad_norm"] == 5.0 and dp["steps"] == 20
    scores = model.anomaly_scores(digits_subset(20).pixels)
    assert scores.shape == (20,) and bool((scores > 0).all())
    loaded = ImageVAEFamily.load(model.save(tmp_path / "m"))
    assert loaded.identity()["differential_privacy"]["epsilon"] == dp["epsilon"]


def test_train_vae_with_dp_on_the_command_line(gensdk, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((8, 8), 10 * i + (120 if label == "b" else 0), np.uint8)).save(tmp_path / "img" / label / f"{i}.png")
    code, out, err = gensdk("train", "vae", "--data", tmp_path / "img", "--out", tmp_path / "m", "--epochs", 2,
                            "--batch-size", 6, "--dp-epsilon", 8, "--dp-delta", 1e-3)
    assert code == 0, err
    assert "differentially private: ε = " in out and "(target 8), δ = 0.001" in out
    manifest = json.loads((tmp_path / "m" / MANIFEST_NAME).read_text())
    assert manifest["options"]["dp_epsilon"] == 8 and manifest["training"]["differential_privacy"]["epsilon"] <= 8


def test_models_saved_before_the_width_module_still_load(table_vae, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    saved = table_vae.save(tmp_path / "old")
    tensors = load_file(str(saved / "model.safetensors"))
    tensors["net.sigma"] = tensors.pop("net.width.sigma")  # the layout of version 1 models
    save_file(tensors, str(saved / "model.safetensors"))
    loaded = TableVAEFamily.load(saved)
    assert torch.equal(loaded.net.sigma, table_vae.net.sigma)
    assert loaded.sample(10, seed=1).equals(table_vae.sample(10, seed=1))
