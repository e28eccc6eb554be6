"""Image watermark: embedding on the device, decoding, attacks, calibration, bad input, the engine path."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import gensdk_watermark.plugin
from gensdk import Verdict
from gensdk.errors import DataError
from gensdk.testing import make_engine
from gensdk_watermark.image import MIN_SIDE, ImageMark, conv_encode, decode_image_file, psnr, viterbi_decode
from gensdk_watermark.keys import WatermarkKey

PAYLOAD = bytes.fromhex("c0ffee42")


def _u8(t: Any) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _t(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a).astype(np.float32) / 255).permute(2, 0, 1).contiguous()


def _jpeg(a: np.ndarray, quality: int = 50) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _half_and_back(a: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = a.shape[:2]
    return np.asarray(Image.fromarray(a).resize((w // 2, h // 2), Image.BICUBIC).resize((w, h), Image.BICUBIC))


def _noise(a: np.ndarray) -> np.ndarray:
    return np.clip(a + np.random.default_rng(0).normal(0, 5, a.shape), 0, 255).round().astype(np.uint8)


def _brighter(a: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)


def _center_crop(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = round(h * 0.8), round(w * 0.8)
    return a[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]


ATTACKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda a: a, "jpeg-50": _jpeg, "resize-half-and-back": _half_and_back, "noise-5": _noise,
    "brightness+20": _brighter, "center-crop-80%": _center_crop,
}


@pytest.fixture(scope="module")
def mark(key: WatermarkKey) -> ImageMark:
    return ImageMark.from_key(key)


def test_convolutional_code_corrects_errors() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, 32)
    coded = conv_encode(bits)
    soft = (2.0 * coded - 1) + rng.normal(0, 0.6, len(coded))  # ~5% raw bit errors
    assert np.mean((soft > 0) != (coded == 1)) > 0.01
    assert np.array_equal(viterbi_decode(soft), bits)


def test_mark_is_invisible_by_psnr_and_decodes(mark: ImageMark, photos: list[Any]) -> None:
    for photo in photos:
        marked = mark.embed(photo, PAYLOAD)
        assert marked.shape == photo.shape and marked.dtype == photo.dtype
        assert psnr(photo, (marked * 255).round() / 255) >= 38.0
        result = mark.detect(_t(_u8(marked)), PAYLOAD)
        assert result.detected and result.payload == PAYLOAD.hex() and result.bit_accuracy == 1.0


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_survives_attacks(mark: ImageMark, photos: list[Any], attack: str) -> None:
    accuracies = []
    for photo in photos:
        marked = _u8(mark.embed(photo, PAYLOAD))
        result = mark.detect(_t(ATTACKS[attack](marked)), PAYLOAD)
        assert result.detected, f"{attack}: p = {result.p_value}"
        accuracies.append(result.bit_accuracy)
    assert np.mean(accuracies) >= (0.90 if "crop" in attack else 0.95)


def test_crop_at_any_offset_is_found(mark: ImageMark, photos: list[Any]) -> None:
    marked = mark.embed(photos[0], PAYLOAD)
    for dy, dx in ((7, 0), (0, 45), (33, 101)):
        result = mark.detect(marked[:, dy:dy + 200, dx:dx + 150], PAYLOAD)
        assert result.detected and result.bit_accuracy == 1.0
        assert result.offset == ((-dy) % 128, (-dx) % 128)


def test_false_positive_rate_on_unmarked_images(mark: ImageMark, photos: list[Any]) -> None:
    """Calibration: at the policy's threshold (1e-3) no unmarked crop is flagged, and the p-values are not
    piled up near zero (60 crops of real photographs and flipped copies, with two keys)."""
    import torch

    rng = np.random.default_rng(1)
    other = ImageMark(12345)
    p_values = []
    for i in range(30):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, 96, 2)
        crop = photo[:, y:y + 160, x:x + 160]
        crop = torch.flip(crop, dims=[2]) if i % 2 else crop
        p_values += [mark.detect(crop).p_value, other.detect(crop).p_value]
    assert not any(p < 1e-3 for p in p_values)
    assert np.mean(np.array(p_values) < 0.1) <= 0.2


def test_wrong_key_does_not_detect(photos: list[Any], mark: ImageMark) -> None:
    marked = mark.embed(photos[1], PAYLOAD)
    result = ImageMark.from_key(WatermarkKey(b"some other key material")).detect(marked)
    assert not result.detected and result.payload is None


def test_too_small_is_an_error_not_a_skip(mark: ImageMark) -> None:
    import torch

    with pytest.raises(DataError, match="too small"):
        mark.embed(torch.rand(3, MIN_SIDE - 1, 400), PAYLOAD)
    with pytest.raises(DataError, match=r"\(C, H, W\)"):
        mark.embed(torch.rand(200, 200), PAYLOAD)
    with pytest.raises(DataError, match="float"):
        mark.embed(torch.zeros(3, 200, 200, dtype=torch.uint8), PAYLOAD)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "I;16", "P"])
def test_files_in_other_modes_are_read_and_detected(mark: ImageMark, photos: list[Any], tmp_path: Path, mode: str) -> None:
    from PIL import Image

    rgb = _u8(photos[2])
    grey = (rgb @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
    if mode in ("L", "I;16"):
        marked = _u8(mark.embed(_t(grey[:, :, None]), PAYLOAD))[:, :, 0]
        image = Image.fromarray(marked) if mode == "L" else Image.fromarray(marked.astype(np.uint16) * 257)
    elif mode == "LA":
        marked = _u8(mark.embed(_t(np.dstack([grey, np.full_like(grey, 200)])), PAYLOAD))
        image = Image.fromarray(marked, "LA")
    else:
        marked = _u8(mark.embed(_t(np.dstack([rgb, np.full_like(grey, 128)])), PAYLOAD))
        image = Image.fromarray(marked, "RGBA")
        assert (marked[:, :, 3] == 128).all()  # alpha left alone
        if mode == "P":
            image = image.convert("RGB").quantize(256)
    path = tmp_path / "img.png"
    image.save(path)
    result = mark.detect(decode_image_file(path), PAYLOAD)
    assert result.detected and result.bit_accuracy >= (0.9 if mode == "P" else 1.0)


def test_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(DataError, match="cannot read image"):
        decode_image_file(path)


def test_engine_marks_every_released_image(tmp_path: Path, key_file: Path, image_family: Any) -> None:
    config = {"policies": [{"id": "watermark-image", "options": {"key_file": str(key_file)}}]}
    with make_engine(tmp_path, plugins=[gensdk_watermark.plugin], config=config) as engine:
        result = engine.generate(image_family(), n=3, seed=11)
    policy = engine.policy("watermark-image")
    assert result.verdict is Verdict.PASS and len(result.outputs) == 3
    payloads = set()
    for output in result.outputs:
        info = output.metadata["watermark"]
        detection = policy.mark.detect(_t(_u8(output.pixels)), bytes.fromhex(info["payload"]))
        assert detection.detected and detection.bit_accuracy == 1.0
        assert info["key_id"] == policy.key.key_id and info["psnr_db"] >= 38
        payloads.add(info["payload"])
    assert len(payloads) == 3  # a per-output id, recorded in the audit trail


def test_engine_blocks_an_image_too_small(tmp_path: Path, key_file: Path, image_family: Any) -> None:
    config = {"policies": [{"id": "watermark-image", "options": {"key_file": str(key_file), "payload": "0badf00d"}}]}
    with make_engine(tmp_path, plugins=[gensdk_watermark.plugin], config=config) as engine:
        result = engine.generate(image_family(size=64), n=2, seed=1)
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    outcome = next(o for o in result.outcomes if o.policy_id == "watermark-image")
    assert "too small" in (outcome.error or "")
