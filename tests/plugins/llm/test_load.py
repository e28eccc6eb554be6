"""Loading local Hugging Face directories: each architecture, and every refusal a user can trigger."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from gensdk.errors import ModelLoadError
from gensdk_llm import LLMFamily


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "mistral", "qwen2"])
def test_each_architecture_loads_through_the_engine_and_generates(model_type: str, arch_dir: Callable[[str], Path], engine: Any) -> None:
    model = engine.load_model(arch_dir(model_type))  # no gensdk manifest: recognised from config.json
    assert isinstance(model, LLMFamily)
    assert model.identity()["model_type"] == model_type
    result = engine.generate(model, prompts=["To be", "Thou art"], seed=1, params={"max_new_tokens": 5})
    assert len(result.outputs) == 2 and all(o.metadata["new_tokens"] <= 5 for o in result.outputs)


def test_plain_transformers_loads_what_gensdk_trained(tiny_lm_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir, local_files_only=True)
    ids = tokenizer("To be, or not to be", return_tensors="pt")
    assert tokenizer.decode(ids["input_ids"][0]) == "To be, or not to be"
    assert model(**ids).logits.shape[-1] == len(tokenizer)


def test_identity_carries_weights_and_config_digests(tiny_lm: LLMFamily, tiny_lm_dir: Path) -> None:
    ident = tiny_lm.identity()
    assert len(ident["weights_digest"]) == 64 and len(ident["hf_config"]) == 64
    assert ident["unsafe_load"] == {"allow_pickle": False, "pickle_weights_loaded": False, "trust_remote_code": False}
    assert ident["license"] == "public domain"


def test_missing_directory(tmp_path: Path, engine: Any) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        engine.load_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="does not exist"):
        LLMFamily.load(tmp_path / "nowhere")


def test_directory_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        LLMFamily.load(tmp_path / "empty")


def test_corrupted_config_is_named(model_copy: Any, engine: Any) -> None:
    path = model_copy("m")
    (path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"config.json is corrupted"):
        engine.load_model(path)


def test_truncated_weights_are_refused(model_copy: Any) -> None:
    path = model_copy("m")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match="model.safetensors is truncated or corrupted"):
        LLMFamily.load(path)


def test_no_weights_at_all(model_copy: Any) -> None:
    path = model_copy("m")
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model weights"):
        LLMFamily.load(path)


def test_not_a_causal_lm(model_copy: Any, edit_json: Any) -> None:
    path = model_copy("m")
    edit_json(path / "config.json", model_type="bert", architectures=["BertModel"])
    assert not LLMFamily.recognizes(path)
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        LLMFamily.load(path)


@pytest.fixture
def pickle_only(tiny_lm: LLMFamily, model_copy: Any) -> Path:
    import torch

    path = model_copy("pickled")
    (path / "model.safetensors").unlink()
    torch.save(tiny_lm.model.state_dict(), path / "pytorch_model.bin")
    return path


def test_pickle_weights_are_refused_by_default(pickle_only: Path, engine: Any) -> None:
    with pytest.raises(ModelLoadError, match="allow_pickle=True"):
        engine.load_model(pickle_only)


def test_allowed_pickle_is_written_to_the_audit_record(pickle_only: Path, engine: Any) -> None:
    model = engine.load_model(pickle_only, allow_pickle=True)
    assert engine.load_model(pickle_only, allow_pickle=True) is model  # cached per path and options
    result = engine.generate(model, prompts=["To be"], seed=1, params={"max_new_tokens": 3})
    body = next(r["body"] for r in engine.audit.records() if r["record_id"] == result.audit_record_id)
    assert body["model"]["unsafe_load"] == {"allow_pickle": True, "pickle_weights_loaded": True, "trust_remote_code": False}
    assert body["model"]["weights_digest"] == model.weights_digest
    assert body["model"]["hf_config"] == model.identity()["hf_config"]


def test_remote_code_is_refused_by_default(model_copy: Any, edit_json: Any, engine: Any) -> None:
    path = model_copy("remote")
    edit_json(path / "config.json", model_type="evil", architectures=["EvilForCausalLM"],
              auto_map={"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    (path / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="trust_remote_code=True"):
        engine.load_model(path)


def test_remote_code_in_the_tokenizer_config_is_refused(model_copy: Any, edit_json: Any) -> None:
    path = model_copy("remote-tok")
    edit_json(path / "tokenizer_config.json", auto_map={"AutoTokenizer": ["tok_evil.EvilTokenizer", None]})
    with pytest.raises(ModelLoadError, match=r"tokenizer_config.json.*trust_remote_code"):
        LLMFamily.load(path)


def test_allowed_remote_code_runs_and_is_recorded(model_copy: Any, edit_json: Any, engine: Any,
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    import transformers.dynamic_module_utils as dynamic

    # transformers copies remote code into its modules cache and imports it from there: keep that in tmp_path.
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = model_copy("remote-ok")
    edit_json(path / "config.json", auto_map={"AutoModelForCausalLM": "modeling_custom.CustomGPT2"})
    (path / "modeling_custom.py").write_text(
        "from transformers import GPT2LMHeadModel\n\n\nclass CustomGPT2(GPT2LMHeadModel):\n    custom_code_ran = True\n",
        encoding="utf-8",
    )
    model = engine.load_model(path, trust_remote_code=True)
    assert type(model.model).__name__ == "CustomGPT2" and model.model.custom_code_ran
    result = engine.generate(model, prompts=["To be"], seed=1, params={"max_new_tokens": 3})
    body = next(r["body"] for r in engine.audit.records() if r["record_id"] == result.audit_record_id)
    assert body["model"]["unsafe_load"]["trust_remote_code"] is True
