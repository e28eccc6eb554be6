"""Privacy report: DCR statistics and the membership-inference AUC tell a generalising model from a copying
one; `gensdk privacy report DIR` writes privacy_report.json and shows it, as a table or JSON."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from gensdk.errors import ModelError
from gensdk_privacy.report import REPORT_NAME, privacy_report


def test_report_of_a_generalising_model(gmm_model) -> None:
    report = privacy_report(gmm_model, seed=0)
    assert report["rows"] == 200 and report["training_rows"] == 1800
    assert set(report["dcr"]) == {"synthetic", "holdout"}
    assert report["dcr"]["synthetic"]["p05"] > 0 and report["exact_copies"] == 0
    assert 0.35 < report["membership_inference"]["auc"] < 0.65  # an attacker learns next to nothing
    assert report["synthetic_closer_than_holdout_p05"] < 0.05


def test_report_of_a_copying_model(adult_sample, copy_family_factory) -> None:
    from gensdk.reference import TrainingReference
    from gensdk.tabular import TableSchema

    training, holdout = adult_sample.iloc[:200].reset_index(drop=True), adult_sample.iloc[200:400]
    reference = TrainingReference.build(TableSchema.infer(adult_sample), training, holdout)
    report = privacy_report(copy_family_factory(training, reference), seed=0)
    assert report["exact_copies"] == report["rows"] == 200
    assert report["dcr"]["synthetic"]["p50"] == 0
    assert report["membership_inference"]["auc"] > 0.75  # copied training rows sit on synthetic rows


def test_report_needs_a_reference(adult_sample) -> None:
    from gensdk_gmm.model import GMMFamily

    model = GMMFamily({"n_components": 1, "max_iter": 2, "holdout_fraction": 0}).fit(adult_sample.iloc[:200])
    with pytest.raises(ModelError, match="holdout_fraction"):
        privacy_report(model)


@pytest.fixture
def cli(privacy_plugins) -> click.Group:
    import gensdk_privacy.plugin

    root = click.Group("gensdk")
    gensdk_privacy.plugin.register_commands(cli=root)
    return root


def test_cli_writes_the_report_beside_the_model_and_prints_json(cli, gmm_model, tmp_path) -> None:
    model_dir = gmm_model.save(tmp_path / "model")
    result = CliRunner().invoke(cli, ["privacy", "report", str(model_dir), "--json", "--rows", "100"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["rows"] == 100
    assert json.loads((model_dir / REPORT_NAME).read_text())["membership_inference"] == printed["membership_inference"]


def test_cli_shows_a_table(cli, gmm_model, tmp_path) -> None:
    model_dir = gmm_model.save(tmp_path / "model")
    result = CliRunner().invoke(cli, ["privacy", "report", str(model_dir), "--rows", "100"])
    assert result.exit_code == 0, result.output
    assert "membership inference AUC" in result.output and "holdout" in result.output
