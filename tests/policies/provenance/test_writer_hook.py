"""The `write_outputs` hook: files written by the engine or `gensdk generate --out` keep their manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gensdk_provenance.plugin
from gensdk.cli import main as cli_main
from gensdk.testing import MockFamily, make_engine
from gensdk_provenance.manifest import SIDECAR_SUFFIX, verify_file


def _engine(tmp_path: Path, signing_key: Path | None):
    policies = [{"id": "provenance", "options": {"key_file": str(signing_key)}}] if signing_key else []
    return make_engine(tmp_path, plugins=[gensdk_provenance.plugin], config={"policies": policies})


def test_one_text_to_a_suffixed_path_is_written_there_with_its_sidecar(tmp_path: Path, signing_key: Path) -> None:
    with _engine(tmp_path, signing_key) as engine:
        result = engine.generate(MockFamily().enqueue("a generated text"), n=1, seed=1)
        written = engine.write_outputs(result.outputs, tmp_path / "answer.txt")
    assert written == [tmp_path / "answer.txt"]
    assert (tmp_path / "answer.txt").read_text(encoding="utf-8") == "a generated text"
    assert (tmp_path / ("answer.txt" + SIDECAR_SUFFIX)).is_file()
    assert verify_file(written[0]).ok


def test_several_texts_to_a_suffixed_path_go_beside_it_one_manifest_each(tmp_path: Path, signing_key: Path) -> None:
    with _engine(tmp_path, signing_key) as engine:
        result = engine.generate(MockFamily(), n=3, seed=1)
        written = engine.write_outputs(result.outputs, tmp_path / "texts.jsonl")
    assert [p.name for p in written] == ["texts.00000.txt", "texts.00001.txt", "texts.00002.txt"]
    assert all(verify_file(p).ok for p in written)


def test_without_manifests_the_core_writer_writes_plain_jsonl(tmp_path: Path) -> None:
    with _engine(tmp_path, None) as engine:
        result = engine.generate(MockFamily(), n=2, seed=1)
        written = engine.write_outputs(result.outputs, tmp_path / "texts.jsonl")
    assert written == [tmp_path / "texts.jsonl"]
    lines = [json.loads(line) for line in written[0].read_text(encoding="utf-8").splitlines()]
    assert [line["text"] for line in lines] == [o.text for o in result.outputs]
    assert not list(tmp_path.glob("*" + SIDECAR_SUFFIX))


def test_mixed_modalities_are_refused_before_any_writer_runs(tmp_path: Path) -> None:
    from gensdk import ImageOutput, TextOutput, write_outputs
    from gensdk.errors import RequestError

    with pytest.raises(RequestError, match="mixed modalities"):
        write_outputs([TextOutput("a"), ImageOutput.__new__(ImageOutput)], tmp_path / "x")


def test_generate_out_writes_a_table_whose_manifest_verifies(tmp_path: Path, signing_key: Path, adult_sample,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from gensdk_gmm import GMMFamily

    model_dir = GMMFamily({"n_components": 2, "max_iter": 10, "seed": 0}).fit(adult_sample.iloc[:300]).save(tmp_path / "gmm")
    config = tmp_path / "gensdk.toml"
    config.write_text(f'[[policies]]\nid = "provenance"\n[policies.options]\nkey_file = "{signing_key}"\n')
    out = tmp_path / "synthetic.csv"
    code = cli_main.run(["generate", str(model_dir), "--n", "40", "--seed", "3", "--config", str(config),
                         "--audit", str(tmp_path / "audit.db"), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    assert out.is_file() and out.with_name(out.name + SIDECAR_SUFFIX).is_file()
    assert len(out.read_text(encoding="utf-8").splitlines()) == 41  # header + 40 rows
    assert cli_main.run(["verify", str(out), "--audit", str(tmp_path / "audit.db")]) == 0
