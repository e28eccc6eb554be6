"""Tiny language models built here, in seconds, on the CPU: nothing is downloaded.

* `tiny_lm_dir`: a GPT-2 that gensdk itself trained (byte-level BPE + 2 layers of width 32) on a few KB of
  TinyShakespeare (or a generated English-like text where ../shared is absent). Trained once per session.
* `arch_dir(model_type)`: random GPT-2 / Llama / Mistral / Qwen2 models of hidden size 32, saved as safetensors
  with the trained tokenizer, to check that each architecture loads and generates.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[3]
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"

try:  # an editable install made before plugins/gensdk_llm existed does not map it yet
    import gensdk_llm  # noqa: F401
except ModuleNotFoundError:
    import sys

    sys.path.insert(0, str(REPO / "plugins"))

import gensdk_llm.plugin  # noqa: E402
from gensdk import Policy, PolicyOptions, hookimpl  # noqa: E402
from gensdk.testing import make_engine  # noqa: E402

# Small enough to train in a few seconds on two busy cores, large enough to produce varied text.
TINY_TRAINING = dict(vocab_size=400, n_layer=2, n_embd=32, n_head=2, context=96, batch_size=16, steps=40,
                     learning_rate=5e-3, warmup_steps=5, license="public domain", data_source="test text")


def _generated_text() -> str:
    rng = random.Random(0)
    names = ["ROMEO", "JULIET", "MERCUTIO", "NURSE"]
    words = "the and to of my thou thee love night day sweet fair good lord what is this that not be".split()
    lines = []
    for _ in range(600):
        lines.append(f"{rng.choice(names)}:\n" + " ".join(rng.choice(words) for _ in range(rng.randint(5, 12))) + ".\n")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    if SHAKESPEARE.is_file():
        path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:24_000], encoding="utf-8")
    else:
        path.write_text(_generated_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory, tiny_text: Path) -> Path:
    from gensdk_llm import LLMFamily

    model = LLMFamily(train_options=TINY_TRAINING).fit(tiny_text)
    return model.save(tmp_path_factory.mktemp("models") / "tiny-lm")


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir: Path) -> Any:
    from gensdk_llm import LLMFamily

    return LLMFamily.load(tiny_lm_dir)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin]) as eng:
        yield eng


@pytest.fixture
def model_copy(tiny_lm_dir: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of the trained tiny model, to damage or edit."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(tiny_lm_dir, tmp_path / name))

    return copy


@pytest.fixture
def edit_json() -> Callable[..., None]:
    def edit(path: Path, **changes: Any) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(changes)
        path.write_text(json.dumps(data), encoding="utf-8")

    return edit


def _arch_config(model_type: str, vocab: int, eos: int) -> Any:
    import transformers

    common = dict(vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    if model_type == "gpt2":
        return transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, **common)
    classes = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig, "qwen2": transformers.Qwen2Config}
    return classes[model_type](hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, max_position_embeddings=128, **common)


@pytest.fixture(scope="session")
def arch_dir(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Any) -> Callable[[str], Path]:
    """Directory of a random tiny model of `model_type`, built once per session."""
    import torch
    from transformers import AutoModelForCausalLM

    built: dict[str, Path] = {}

    def build(model_type: str) -> Path:
        if model_type not in built:
            tokenizer = tiny_lm.tokenizer
            config = _arch_config(model_type, len(tokenizer), tokenizer.eos_token_id)
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config)
            path = tmp_path_factory.mktemp("arch") / model_type
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            built[model_type] = path
        return built[model_type]

    return build


class ForceText(Policy):
    """Contributes a LogitsProcessor that forces the model to write `text` (then end of text)."""

    id = "force-text"
    version = "1"
    modalities = frozenset({"text"})

    class Options(PolicyOptions):
        token_ids: list[int]

    @hookimpl
    def prepare_generation(self, request: Any, context: Any) -> list[Any]:
        return [make_forcing_processor(self.options.token_ids, context.model._eos_ids()[0])]


def make_forcing_processor(token_ids: list[int], eos: int) -> Any:
    import torch
    from transformers import LogitsProcessor

    class Forcing(LogitsProcessor):
        def __init__(self) -> None:
            self.prompt_length: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            self.prompt_length = self.prompt_length or input_ids.shape[1]
            step = input_ids.shape[1] - self.prompt_length
            target = token_ids[step] if step < len(token_ids) else eos
            forced = torch.full_like(scores, float("-inf"))
            forced[:, target] = 0.0
            return forced

    return Forcing()


@pytest.fixture
def force_text(tiny_lm: Any) -> Callable[[str], Policy]:
    """A ForceText policy making the tiny model write exactly the given text."""

    def make(text: str) -> Policy:
        return ForceText({"token_ids": tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"]})

    return make
