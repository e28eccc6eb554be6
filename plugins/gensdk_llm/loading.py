"""Reading a local Hugging Face causal-LM directory, refusing what could run code unless explicitly allowed.

Checks run in the order a user can act on: the directory and its config.json, whether it is a causal LM, remote
code (`auto_map`), the weight files (safetensors, or pickle only with `allow_pickle`), their integrity, and only
then transformers' own `from_pretrained` on the path (never a hub id: `local_files_only=True`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from gensdk._canonical import digest_of, file_digest
from gensdk.errors import GensdkError, ModelLoadError

__all__ = ["CAUSAL_LM_TYPES", "check_safetensors", "from_pretrained", "is_causal_lm", "quiet_transformers",
           "read_json", "refuse_remote_code", "weight_files", "weights_digest"]

log = logging.getLogger("gensdk.llm")

# model_type values of causal LMs, so `recognizes` need not import transformers; config.json files naming a
# `*ForCausalLM` / `*LMHeadModel` architecture are recognised too.
CAUSAL_LM_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "gpt_bigcode", "llama", "mistral", "mixtral", "qwen2", "qwen2_moe",
    "qwen3", "qwen3_moe", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "falcon", "opt", "bloom", "codegen",
    "starcoder2", "olmo", "olmo2", "stablelm", "smollm3", "granite", "cohere", "mpt", "persimmon", "xglm",
})
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def is_causal_lm(config: dict[str, Any]) -> bool:
    if config.get("model_type") in CAUSAL_LM_TYPES:
        return True
    architectures = config.get("architectures") or []
    if any(isinstance(a, str) and a.endswith(_CAUSAL_SUFFIXES) for a in architectures):
        return True
    return "AutoModelForCausalLM" in (config.get("auto_map") or {})


def read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path.parent} is not a Hugging Face model directory: {path.name} is missing")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is corrupted: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is corrupted: it holds a JSON {type(data).__name__}, not an object")
    return data


def refuse_remote_code(path: Path, config: dict[str, Any], trust_remote_code: bool) -> None:
    asking = [name for name, body in (("config.json", config),
                                      ("tokenizer_config.json", read_json(path / "tokenizer_config.json", required=False)))
              if body.get("auto_map")]
    if not asking:
        return
    if not trust_remote_code:
        raise ModelLoadError(
            f"{path} asks to run Python code shipped with the model (auto_map in {', '.join(asking)}); gensdk "
            "refuses by default. If you have reviewed that code, pass trust_remote_code=True "
            "(gensdk generate --trust-remote-code); it is written to every audit record."
        )
    log.warning("loading %s with trust_remote_code=True: Python code from the model directory runs in this "
                "process; recorded in the audit trail", path)


def weight_files(path: Path, allow_pickle: bool) -> tuple[list[Path], bool]:
    """The weight files transformers will read, and whether they are pickle."""
    safe = sorted(path.glob("*.safetensors"))
    if safe:
        return safe, False
    pickled = sorted(p for p in path.glob("*.bin") if p.name.startswith(("pytorch_model", "model")))
    if not pickled:
        raise ModelLoadError(f"{path} has no model weights (no *.safetensors file)")
    if not allow_pickle:
        raise ModelLoadError(
            f"{path} has only pickle weights ({', '.join(p.name for p in pickled)}); unpickling can run "
            "arbitrary code, so gensdk refuses it by default. Convert them to safetensors, or pass "
            "allow_pickle=True (gensdk generate --allow-pickle); it is written to every audit record."
        )
    log.warning("loading pickle weights from %s (allow_pickle=True); recorded in the audit trail", path)
    return pickled, True


def check_safetensors(files: list[Path]) -> None:
    """A truncated or garbled safetensors file fails here with its name, not deep inside transformers."""
    if not files or files[0].suffix != ".safetensors":
        return
    from safetensors import safe_open

    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own types for truncated or garbled headers
            raise ModelLoadError(f"weights file {file} is truncated or corrupted: {exc}") from None


def weights_digest(files: list[Path]) -> str:
    if len(files) == 1:
        return file_digest(files[0])
    return digest_of({f.name: file_digest(f) for f in files})


def from_pretrained(path: Path, pickled: bool, trust_remote_code: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        except Exception as exc:
            raise ModelLoadError(f"cannot read the tokenizer in {path}: {type(exc).__name__}: {exc}") from None
        try:
            model = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, use_safetensors=not pickled, trust_remote_code=trust_remote_code,
                dtype="float32",  # the engine casts to its dtype on first use (bf16 on GPU)
            )
        except GensdkError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load the model in {path}: {type(exc).__name__}: {exc}") from None
    return model, tokenizer


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No per-shard progress bars while loading or saving: gensdk prints its own progress."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


