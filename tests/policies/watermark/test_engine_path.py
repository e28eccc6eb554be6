"""The engine path end to end: every released output is watermarked (its detector finds it) and carries a
provenance manifest that verifies against its content, the signing key and the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gensdk_gmm.plugin
import gensdk_llm.plugin
import gensdk_provenance.plugin
import gensdk_watermark.plugin
from gensdk import Verdict
from gensdk.testing import make_engine
from gensdk_provenance.manifest import verify_file, verify_manifest, write_outputs
from gensdk_watermark.image import decode_image_file


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    from gensdk.audit.keys import create_private_key

    create_private_key(tmp_path / "sign.pem")
    return tmp_path / "sign.pem"


def _engine(tmp_path: Path, key_file: Path, signing_key: Path, watermark: str) -> Any:
    config = {"policies": [{"id": watermark, "options": {"key_file": str(key_file)}},
                           {"id": "provenance", "options": {"key_file": str(signing_key)}}]}
    plugins = [gensdk_watermark.plugin, gensdk_provenance.plugin, gensdk_llm.plugin, gensdk_gmm.plugin]
    return make_engine(tmp_path, plugins=plugins, config=config)


def _check_manifests(engine: Any, result: Any, tmp_path: Path) -> list[Path]:
    from gensdk.audit.keys import load_private_key, public_raw

    pinned = public_raw(load_private_key(Path(engine.policy("provenance").options.key_file)))
    for output in result.outputs:
        manifest = output.metadata["provenance"]
        check = verify_manifest(manifest, output.digest(), public_key=pinned, audit=engine.audit)
        assert check.ok, check.problems
        assert manifest["watermark"]["key_id"] == output.metadata["watermark"]["key_id"]
        assert manifest["audit"]["hash"] == result.audit_hash
    paths = write_outputs(result.outputs, tmp_path / "files")
    assert all(verify_file(p, public_key=pinned, audit=engine.audit).ok for p in paths)
    return paths


def test_text(tmp_path: Path, key_file: Path, signing_key: Path, tiny_lm: Any) -> None:
    with _engine(tmp_path, key_file, signing_key, "watermark-text") as engine:
        result = engine.generate(tiny_lm, prompts=["the world", "we have"], n=2, seed=3, params={"max_new_tokens": 60})
        assert result.verdict is Verdict.PASS and len(result.outputs) == 4
        paths = _check_manifests(engine, result, tmp_path)
        scheme = engine.policy("watermark-text").scheme
    for path in paths:
        assert scheme.detect(tiny_lm.tokenizer(path.read_text(), add_special_tokens=False)["input_ids"]).detected


def test_image(tmp_path: Path, key_file: Path, signing_key: Path, image_family: Any) -> None:
    with _engine(tmp_path, key_file, signing_key, "watermark-image") as engine:
        result = engine.generate(image_family(), n=2, seed=3)
        assert result.verdict is Verdict.PASS and len(result.outputs) == 2
        paths = _check_manifests(engine, result, tmp_path)
        mark = engine.policy("watermark-image").mark
    for path, output in zip(paths, result.outputs, strict=True):
        detection = mark.detect(decode_image_file(path))
        assert detection.detected and detection.payload == output.metadata["watermark"]["payload"]


def test_table(tmp_path: Path, key_file: Path, signing_key: Path, gmm_model: Any) -> None:
    import pandas as pd

    with _engine(tmp_path, key_file, signing_key, "watermark-table") as engine:
        result = engine.generate(gmm_model, n=400, seed=3)
        assert result.verdict is Verdict.PASS
        paths = _check_manifests(engine, result, tmp_path)
        mark = engine.policy("watermark-table").mark
        manifest = result.outputs[0].metadata["provenance"]
    assert manifest["model"]["license"] == "CC BY 4.0" and manifest["model"]["data_source"].startswith("UCI Adult")
    assert mark.detect(pd.read_csv(paths[0])).detected
