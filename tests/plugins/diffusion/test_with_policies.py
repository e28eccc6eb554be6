"""The diffusion family with the first-party image policies: signed provenance on PNGs, and the image watermark
failing closed on images too small to carry it. (A tiny random pipeline draws white noise, which no
imperceptible watermark survives, so embedding on real images is left to the watermark's own tests.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gensdk_diffusion.plugin
from gensdk import Verdict
from gensdk.testing import make_engine

watermark = pytest.importorskip("gensdk_watermark.image")
provenance = pytest.importorskip("gensdk_provenance")

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def test_signed_pngs_from_a_text_to_image_pipeline(tmp_path: Path, sd_model: Any) -> None:
    signer = provenance.ProvenancePolicy({"key_file": str(tmp_path / "signing.pem"), "create_key": True})
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin], policies=[signer]) as engine:
        result = engine.generate(sd_model, prompts=["a red square"], n=2, seed=2, params={"steps": 2})
    written = provenance.write_outputs(result.outputs, tmp_path / "pngs")
    checks = [provenance.verify_file(path) for path in written]
    assert result.verdict is Verdict.PASS and [c.ok for c in checks] == [True, True]
    assert checks[0].manifest["model"]["weights_digest"] == sd_model.weights_digest


def test_the_watermark_blocks_images_too_small_to_carry_it(tmp_path: Path, unet_model: Any) -> None:
    mark = watermark.ImageWatermarkPolicy({"key": KEY})
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin], policies=[mark]) as engine:
        result = engine.generate(unet_model, n=2, seed=1, params={"steps": 2})
    outcome = result.outcomes[0]
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    assert outcome.status == "error" and "8" in outcome.error
