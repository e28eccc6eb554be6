"""`gensdk detect text|image|table` and `gensdk watermark keygen`, in process. Until pyproject.toml declares
the `watermark` entry point, the tests add it to what gensdk discovers."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from gensdk.cli import main as cli_main
from gensdk_watermark.image import ImageMark
from gensdk_watermark.keys import WatermarkKey
from gensdk_watermark.table import TableMark
from gensdk_watermark.text import KGW

ENTRY_POINT = EntryPoint(name="watermark", value="gensdk_watermark.plugin", group="gensdk")


@pytest.fixture
def gensdk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    import gensdk.plugins

    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "watermark")
    if "watermark" not in entry_points(group="gensdk").names:
        monkeypatch.setattr(gensdk.plugins, "entry_points", lambda group: [*entry_points(group=group), ENTRY_POINT])

    def run(*args: Any) -> tuple[int, str, str]:
        code = cli_main.run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_detect_text(gensdk: Any, tiny_lm: Any, key: WatermarkKey, key_file: Path, tmp_path: Path) -> None:
    import torch
    from transformers import LogitsProcessorList

    model_dir = tmp_path / "lm"
    tiny_lm.tokenizer.save_pretrained(model_dir)
    torch.manual_seed(0)
    batch = tiny_lm.tokenizer(["the world", "a man"], return_tensors="pt")
    out = tiny_lm.model.generate(**batch, do_sample=True, top_k=0, max_new_tokens=80, min_new_tokens=80, pad_token_id=0,
                                 logits_processor=LogitsProcessorList([KGW(key).processor()]))
    texts = tiny_lm.tokenizer.batch_decode(out[:, 2:], skip_special_tokens=True)
    marked = tmp_path / "marked.jsonl"
    marked.write_text("".join(json.dumps({"prompt": None, "text": t}) + "\n" for t in texts))
    code, stdout, _ = gensdk("detect", "text", marked, "--model", model_dir, "--key", key_file)
    assert code == 0 and stdout.count("WATERMARKED") == 2
    plain = tmp_path / "plain.txt"
    plain.write_text(" ".join(["the world is good and we have one time"] * 3))
    code, stdout, _ = gensdk("detect", "text", plain, "--model", model_dir, "--key", key_file, "--json")
    assert code == 1 and json.loads(stdout)[0]["verdict"] in ("not watermarked", "inconclusive")
    truncated = tmp_path / "short.txt"
    truncated.write_text(texts[0].split()[0])
    code, stdout, _ = gensdk("detect", "text", truncated, "--model", model_dir, "--key", key_file)
    assert code == 1 and "INCONCLUSIVE" in stdout


def test_detect_image(gensdk: Any, photos: list[Any], key: WatermarkKey, key_file: Path, tmp_path: Path) -> None:
    from PIL import Image

    marked = ImageMark.from_key(key).embed(photos[0], bytes.fromhex("12345678"))
    for name, pixels in (("marked.png", marked), ("plain.png", photos[0])):
        Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(tmp_path / name)
    code, stdout, _ = gensdk("detect", "image", tmp_path / "marked.png", "--key", key_file, "--payload", "12345678", "--json")
    row = json.loads(stdout)[0]
    assert code == 0 and row["payload"] == "12345678" and row["bit_accuracy"] == 1.0 and row["p_value"] < 1e-6
    code, stdout, _ = gensdk("detect", "image", tmp_path / "plain.png", "--key", key_file)
    assert code == 1 and "NOT WATERMARKED" in stdout
    code, stdout, _ = gensdk("detect", "image", tmp_path / "marked.png", "--key-hex", "ff" * 16)
    assert code == 1  # the wrong key finds nothing


def test_detect_table_with_config(gensdk: Any, key: WatermarkKey, key_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.integers(10_000, 900_000, 400), "city": ["x"] * 400})
    TableMark.from_key(key).embed(frame)
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = tmp_path / "gensdk.toml"
    config.write_text(f'[[policies]]\nid = "watermark-table"\noptions = {{ key_file = "{key_file}" }}\n')
    code, stdout, _ = gensdk("detect", "table", tmp_path / "t.csv", "--config", config)
    assert code == 0 and "WATERMARKED" in stdout
    pd.DataFrame({"city": ["x", "y"]}).to_csv(tmp_path / "text.csv", index=False)
    code, _, stderr = gensdk("detect", "table", tmp_path / "text.csv", "--key", key_file)
    assert code == 2 and "no numeric column" in stderr


def test_missing_key_and_keygen(gensdk: Any, tmp_path: Path) -> None:
    code, _, stderr = gensdk("detect", "table", tmp_path / "t.csv")
    assert code == 2 and "needs a key" in stderr
    code, stdout, _ = gensdk("watermark", "keygen", tmp_path / "k")
    assert code == 0 and "key id" in stdout and (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    code, _, stderr = gensdk("watermark", "keygen", tmp_path / "k")
    assert code == 2 and "never overwritten" in stderr
