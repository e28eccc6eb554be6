"""Training a tiny LM end to end (seconds), its refusals, and the family's conformance kit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

import gensdk_llm.plugin
from gensdk.errors import ConfigError, DataError
from gensdk.testing.conformance import FamilyConformance
from gensdk_llm import LLMFamily
from gensdk_llm.model import METADATA_NAME


def test_training_lowers_held_out_perplexity(tiny_lm_dir: Path, tiny_text: Path) -> None:
    meta = json.loads((tiny_lm_dir / METADATA_NAME).read_text(encoding="utf-8"))["training"]
    assert meta["heldout_perplexity_after"] < 0.8 * meta["heldout_perplexity_before"]
    assert meta["data_sha256"] == hashlib.sha256(tiny_text.read_bytes()).hexdigest()
    assert meta["train_chars"] + meta["heldout_chars"] == meta["data_chars"]
    assert meta["heldout_chars"] == pytest.approx(0.1 * meta["data_chars"], abs=1)


def test_trained_directory_is_a_plain_hf_directory(tiny_lm_dir: Path) -> None:
    names = {p.name for p in tiny_lm_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", METADATA_NAME} <= names
    assert "gensdk_model.json" not in names and not list(tiny_lm_dir.glob("*.bin"))
    assert LLMFamily.recognizes(tiny_lm_dir)


def test_training_reference_points_at_the_text(tiny_lm: LLMFamily, tiny_text: Path) -> None:
    ref = tiny_lm.training_reference()
    assert ref["data_path"] == str(tiny_text.resolve())
    assert ref["data_sha256"] == hashlib.sha256(tiny_text.read_bytes()).hexdigest()


def test_time_budget_stops_training(tiny_text: Path) -> None:
    options = dict(vocab_size=300, n_layer=1, n_embd=16, n_head=2, context=32, batch_size=2, steps=10_000, minutes=1e-5)
    steps = []
    model = LLMFamily(train_options=options).fit(tiny_text, progress=lambda done, total, msg: steps.append(done))
    assert model.metadata["training"]["steps"] == 1 and steps == [1]


def test_non_utf8_training_text_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Fran\xe7ois dit bonjour.\n".encode("latin-1") * 50)
    with pytest.raises(DataError, match="not UTF-8"):
        LLMFamily().fit(path)


@pytest.mark.parametrize("content, message", [("", "is empty"), ("   \n", "is empty"), ("To be.", "too short")])
def test_unusable_training_text(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "text.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        LLMFamily().fit(path)


def test_missing_training_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        LLMFamily().fit(tmp_path / "absent.txt")


def test_bad_training_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="multiple of n_head"):
        LLMFamily(train_options={"n_embd": 30, "n_head": 4})
    with pytest.raises(ConfigError, match="layers"):
        LLMFamily(train_options={"layers": 3})


class TestLLMConformance(FamilyConformance):
    family = LLMFamily
    plugin = gensdk_llm.plugin
    request = {"n": 2, "prompts": ["To be"], "params": {"max_new_tokens": 8}}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, tiny_lm_dir: Path) -> Any:  # type: ignore[override]
        return LLMFamily.load(tiny_lm_dir)
