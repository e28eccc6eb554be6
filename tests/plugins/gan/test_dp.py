"""Differentially private training (gensdk_gan.dp) of the GAN families, and the machinery the VAE families share:
ε spent within the target and recorded in the metadata, the identity and every audit record; what DP mode
changes, enforced; typed errors for budgets that cannot be met and for a missing opacus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import gensdk_gan.plugin
from gensdk.errors import ConfigError, MissingDependencyError
from gensdk.family import MANIFEST_NAME
from gensdk.testing import make_engine
from gensdk.verdicts import Verdict
from gensdk_gan import ImageGANFamily, TableGANFamily
from tiny_models import audit_body, digits_subset

TINY_DP_TABLE = dict(epochs=2, batch_size=100, noise_dim=16, generator_dims=[32], critic_dims=[32], max_modes=3,
                     diagnostic_rows=200, seed=0, target="income", dp_epsilon=3.0)
TINY_DP_IMAGE = dict(epochs=2, batch_size=32, noise_dim=8, width=8, diagnostic_samples=50, seed=0, dp_epsilon=3.0)


@pytest.fixture(scope="module")
def dp_table_gan(adult500):
    return TableGANFamily(TINY_DP_TABLE).fit(adult500)


def test_dp_table_gan_spends_at_most_its_budget_and_says_so(dp_table_gan) -> None:
    dp = dp_table_gan.metadata["differential_privacy"]
    # 450 training rows (50 held out), batches of 100: sample rate 1/5, 5 critic steps per epoch
    assert dp["steps"] == 10 and dp["sample_rate"] == pytest.approx(0.2)
    assert 0.9 * 3.0 < dp["epsilon"] <= 3.0 and dp["delta"] == 1e-5
    assert dp["noise_multiplier"] > 0.5 and dp["accountant"] == "rdp" and dp["library"].startswith("opacus ")
    assert dp_table_gan.options.pac == 1 and dp_table_gan.options.classifier_weight == 0
    assert dp_table_gan.identity()["differential_privacy"] == {"epsilon": dp["epsilon"], "delta": 1e-5,
                                                               "accountant": "rdp", "max_grad_norm": 1.0}


def test_epsilon_and_delta_land_in_the_audit_record_of_every_output(dp_table_gan, tmp_path: Path) -> None:
    saved = dp_table_gan.save(tmp_path / "model")
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    assert manifest["training"]["differential_privacy"]["epsilon"] == dp_table_gan.metadata["differential_privacy"]["epsilon"]
    with make_engine(tmp_path, plugins=[gensdk_gan.plugin]) as engine:
        model = engine.load_model(saved)
        results = [engine.generate(model, {"n": 30, "seed": s, "conditions": {"income": ">50K"}}) for s in (1, 2)]
    for result in results:
        assert result.verdict is Verdict.PASS and (result.table()["income"] == ">50K").all()
        recorded = audit_body(tmp_path / "audit.db", result.audit_record_id)["model"]["differential_privacy"]
        assert recorded["epsilon"] == manifest["training"]["differential_privacy"]["epsilon"] <= 3.0
        assert recorded["delta"] == 1e-5


def test_a_model_trained_without_dp_claims_none(table_gan) -> None:
    assert "differential_privacy" not in table_gan.identity()
    assert "differential_privacy" not in table_gan.metadata


def test_stopping_early_spends_less_than_the_target(adult500) -> None:
    model = TableGANFamily({**TINY_DP_TABLE, "epochs": 4, "time_budget_s": 0.01, "diagnostic_rows": 0}).fit(adult500)
    dp = model.metadata["differential_privacy"]
    assert model.metadata["epochs_run"] == 1 and dp["steps"] == 5
    assert 0 < dp["epsilon"] < 0.8 * 3.0  # noise for 4 epochs, 1 taken


def test_each_rows_gradient_is_clipped_before_the_noise_is_added() -> None:
    import torch

    from gensdk_gan.dp import PrivacyOptions, PrivateTraining

    layer = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.zeros_(layer.weight)
    private = PrivateTraining(layer, torch.optim.SGD(layer.parameters(), lr=1.0), torch.nn.MSELoss(), rows=400,
                              batch_size=200, epochs=1, options=PrivacyOptions(dp_epsilon=500, dp_max_grad_norm=1.0))
    rows = next(iter(private.batches()))
    x = torch.full((len(rows), 4), 100.0)  # every row's own gradient: 2 * (0 - 1e4) * 100 per weight, norm 4e6
    private.step(private.criterion(layer(x).squeeze(1), torch.full((len(rows),), 1e4)))
    # SGD, lr 1: the update is -(sum of the rows' clipped gradients + noise) / expected batch (200): each row
    # contributes at most C = 1, so about len(rows) / 200 in norm, with noise ~ multiplier / 200 per weight.
    update = layer.weight.detach().flatten()
    assert private.optimizer.noise_multiplier < 1
    assert abs(float(update.norm()) - len(rows) / 200) < 0.05 and float(update.min()) > 0
    with pytest.raises(ValueError, match="one-dimensional"):  # a (rows, 1) column would clip nothing
        private.step(private.criterion(layer(x), torch.full((len(rows), 1), 1e4)))
    private.close()


@pytest.mark.parametrize(("options", "message"), [
    ({"pac": 10}, "pac must be 1 with dp_epsilon"),
    ({"classifier_weight": 1.0}, "classifier_weight must be 0 with dp_epsilon"),
    ({"patience": 3}, "patience .* cannot be combined with dp_epsilon"),
    ({"dp_epsilon": -1}, "dp_epsilon: Input should be greater than 0"),
    ({"dp_max_grad_norm": 0}, "dp_max_grad_norm"),
])
def test_what_dp_mode_changes_is_enforced(options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TableGANFamily({**TINY_DP_TABLE, **options})


def test_a_dp_run_is_reproducible_from_its_seed(adult500) -> None:
    options = {**TINY_DP_TABLE, "epochs": 1, "diagnostic_rows": 0}
    first = TableGANFamily(options).fit(adult500.head(200)).sample(30, seed=4)
    assert first.equals(TableGANFamily(options).fit(adult500.head(200)).sample(30, seed=4))  # Poisson batches and noise
    assert not first.equals(TableGANFamily({**options, "seed": 1}).fit(adult500.head(200)).sample(30, seed=4))


def test_dp_mode_picks_a_small_critic_unless_told_otherwise() -> None:
    assert TableGANFamily({"dp_epsilon": 1}).options.critic_dims == [64]
    assert TableGANFamily({"dp_epsilon": 1, "critic_dims": [128, 128]}).options.critic_dims == [128, 128]
    assert TableGANFamily({}).options.critic_dims == [256, 256]


def test_budgets_that_cannot_be_met_are_config_errors(adult500) -> None:
    with pytest.raises(ConfigError, match=r"dp_delta 0\.01 is not below 1/rows"):
        TableGANFamily({**TINY_DP_TABLE, "dp_delta": 0.01}).fit(adult500)
    with pytest.raises(ConfigError, match="dp_epsilon 0.01 cannot be reached in 2 epochs"):
        TableGANFamily({**TINY_DP_TABLE, "dp_epsilon": 0.01}).fit(adult500)


def test_without_opacus_dp_training_names_the_extra(adult500, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opacus", None)  # what `import opacus` meets when it is not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'gensdk\[dp\]'"):
        TableGANFamily(TINY_DP_TABLE).fit(adult500)
    TableGANFamily({**TINY_DP_TABLE, "dp_epsilon": None, "epochs": 1, "diagnostic_rows": 0}).fit(adult500.head(100))


def test_dp_image_gan_uses_group_norm_and_round_trips(tmp_path: Path) -> None:
    from torch import nn

    model = ImageGANFamily(TINY_DP_IMAGE).fit(digits_subset())
    dp = model.metadata["differential_privacy"]
    assert 0.9 * 3.0 < dp["epsilon"] <= 3.0 and dp["steps"] == 20  # 300 images, batches of 32: 10 per epoch
    norms = {type(m) for m in model.net["critic"].modules()}
    assert nn.GroupNorm in norms and nn.BatchNorm2d not in norms  # BatchNorm would mix images' gradients
    loaded = ImageGANFamily.load(model.save(tmp_path / "m"))
    assert (loaded.sample(4, seed=2) == model.sample(4, seed=2)).all()
    with make_engine(tmp_path, plugins=[gensdk_gan.plugin]) as engine:
        result = engine.generate(loaded, {"n": 2, "seed": 0, "conditions": {"class": 3}})
    recorded = audit_body(tmp_path / "audit.db", result.audit_record_id)["model"]["differential_privacy"]
    assert recorded["epsilon"] == dp["epsilon"] and recorded["delta"] == 1e-5


def test_train_gan_with_dp_on_the_command_line(gensdk, adult500, tmp_path: Path) -> None:
    data = tmp_path / "adult.csv"
    adult500.to_csv(data, index=False)
    code, out, err = gensdk("train", "gan", "--data", data, "--out", tmp_path / "m", "--epochs", 1, "--batch-size", 100,
                            "--dp-epsilon", 2, "--dp-delta", 1e-6, "--dp-max-grad-norm", 0.5, "--target", "income")
    assert code == 0, err
    assert "differentially private: ε = " in out and "(target 2), δ = 1e-06" in out
    dp = json.loads((tmp_path / "m" / MANIFEST_NAME).read_text())["training"]["differential_privacy"]
    assert dp["delta"] == 1e-6 and dp["max_grad_norm"] == 0.5 and dp["epsilon"] <= 2
    code, _, err = gensdk("train", "gan", "--data", data, "--out", tmp_path / "m2", "--dp-epsilon", 2, "--pac", 10)
    assert code == 2 and "pac must be 1 with dp_epsilon" in err
