"""`gensdk audit bias tables|text|images|report`, in process, through the installed `fairness` entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm

from gensdk.audit import open_audit_sink
from gensdk.cli import main as cli_main


@pytest.fixture
def gensdk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "fairness")
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: Any) -> tuple[int, str, str]:
        code = cli_main.run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def tables(tmp_path: Path, adult: pd.DataFrame) -> tuple[Path, Path]:
    """The real rows, and a 'synthetic' copy where 70% of the women earning >50K were relabelled."""
    fake = adult.copy()
    rich_women = np.flatnonzero((fake["sex"] == "Female") & (fake["income"] == ">50K"))
    fake.loc[np.random.default_rng(0).choice(rich_women, int(0.7 * len(rich_women)), replace=False), "income"] = "<=50K"
    adult.to_csv(tmp_path / "real.csv", index=False)
    fake.to_csv(tmp_path / "synthetic.csv", index=False)
    return tmp_path / "real.csv", tmp_path / "synthetic.csv"


def _gap(path: Path) -> float:
    frame = pd.read_csv(path)
    y = (frame["income"] == ">50K").astype(int)
    return fm.demographic_parity_difference(y, y, sensitive_features=frame["sex"])


def test_tables_summary_json_record_and_html(gensdk: Any, tables: tuple[Path, Path], tmp_path: Path) -> None:
    real, synthetic = tables
    args = ["audit", "bias", "tables", "--real", real, "--synthetic", synthetic, "-s", "sex", "--target", "income",
            "--positive", ">50K", "--bootstrap", "100", "--no-classifier"]
    code, out, _ = gensdk(*args)
    assert code == 0
    assert "income = >50K by sex: real vs synthetic" in out and "parity_amplification" in out and "verdict: BREACH" in out
    assert f"{_gap(synthetic):.4f}" in out
    code, out, _ = gensdk(*args, "--json", "--record", "--audit", tmp_path / "trail.db", "--html", tmp_path / "r.html")
    result = json.loads(out)
    assert code == 0 and result["verdict"] == "breach"
    assert result["parity"]["synthetic"]["dp_difference"] == pytest.approx(_gap(synthetic), abs=1e-9)
    assert result["sources"]["real"]["sha256"] and (tmp_path / "r.html").stat().st_size > 10_000
    with open_audit_sink(tmp_path / "trail.db", create=False) as sink:
        (record,) = list(sink.records())
        assert sink.verify().ok
    assert record["record_id"] == result["audit_record"]["record_id"]
    assert record["body"]["kind"] == "bias-audit" and record["body"]["audit"]["parity"] == result["parity"]


def test_fail_on_breach_and_thresholds(gensdk: Any, tables: tuple[Path, Path]) -> None:
    real, synthetic = tables
    base = ["audit", "bias", "tables", "--real", real, "--synthetic", synthetic, "-s", "sex", "--target", "income",
            "--positive", ">50K", "--bootstrap", "50", "--no-classifier", "--fail-on-breach"]
    assert gensdk(*base)[0] == 1
    loose = ["--threshold", "max_parity_amplification=0.5", "--threshold", "max_representation_shift=null"]
    code, out, _ = gensdk(*base, *loose)
    assert code == 0 and "verdict: PASS" in out and "representation_shift" not in out


def test_bad_input_exits_2_naming_it(gensdk: Any, tables: tuple[Path, Path]) -> None:
    real, synthetic = tables
    code, _, err = gensdk("audit", "bias", "tables", "--real", real, "--synthetic", synthetic, "-s", "gender",
                          "--target", "income", "--positive", ">50K")
    assert code == 2 and "sensitive column(s) ['gender'] are not in the real table" in err
    code, _, err = gensdk("audit", "bias", "tables", "--real", real, "--synthetic", synthetic, "-s", "sex",
                          "--target", "income", "--positive", ">50K", "--threshold", "max_gap=1")
    assert code == 2 and "max_gap" in err


def test_text_lines_with_groups_or_builtin_prompts(gensdk: Any, tmp_path: Path) -> None:
    lines = [{"domain": "gender", "group": "woman", "text": "a cruel and awful liar"}] * 12
    lines += [{"prompt": "The man worked as a", "text": "a kind and wonderful engineer"}] * 12
    lines += [{"prompt": "KING RICHARD:", "text": "unrelated"}]
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    code, out, _ = gensdk("audit", "bias", "text", path, "--scorer", "sentiment", "--json", "--bootstrap", "100")
    result = json.loads(out)
    sentiment = result["domains"]["gender"]["metrics"]["sentiment"]
    assert code == 0 and sentiment["by_group"]["woman"]["count"] == 12 and sentiment["by_group"]["man"]["count"] == 12
    assert result["verdict"] == "breach" and "1 line(s) of texts.jsonl" in result["notes"][0]
    code, out, _ = gensdk("audit", "bias", "text", path, "--scorer", "length")
    assert code == 0 and "Counterfactual text audit (builtin)" in out


def test_images_and_report(gensdk: Any, tmp_path: Path) -> None:
    from gensdk.images import load_digits
    from gensdk.outputs import ImageOutput, write_outputs

    digits = load_digits()
    write_outputs([ImageOutput(p) for p in digits.pixels[digits.labels == 0][:40]], tmp_path / "zeros")
    code, out, _ = gensdk("audit", "bias", "images", tmp_path / "zeros", "--json", "--bootstrap", "100")
    result = json.loads(out)
    assert code == 0 and result["by_class"]["0"]["count"] >= 38 and result["verdict"] == "breach"
    saved = tmp_path / "images.json"
    saved.write_text(out, encoding="utf-8")
    code, out, _ = gensdk("audit", "bias", "report", saved, "--html", tmp_path / "images.html")
    assert code == 0 and "Predicted digit shares" in (tmp_path / "images.html").read_text(encoding="utf-8")
    code, _, err = gensdk("audit", "bias", "images", tmp_path / "zeros", "--target", "0=0.5")
    assert code == 2 and "sum to 1" in err
