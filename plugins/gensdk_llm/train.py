"""Train a small language model on one text file, so that demos and tests have a real LM without a download.

Steps: read the file (UTF-8, strictly), hold out its last 10% of characters, train a byte-level BPE tokenizer
(`tokenizers`, GPT-2's pre-tokenisation) on the rest, then a small GPT-2 (`transformers.GPT2LMHeadModel`) on
random windows of the training tokens with AdamW and a cosine learning rate. Held-out perplexity is measured
before and after training. The result is a plain Hugging Face directory (`LLMFamily.save`).

Defaults are sized for a few minutes on two CPU cores: a model that is small for its data learns more per
second of compute early on (1.1 M parameters, 4 layers of width 128, a 128-token context); on TinyShakespeare
that is enough for English words, speaker names and verse-shaped lines.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gensdk._canonical import sha256_hex
from gensdk.errors import ConfigError, DataError
from gensdk.family import Progress
from gensdk.request import pydantic_message

__all__ = ["END_OF_TEXT", "HELDOUT_FRACTION", "TrainOptions", "read_text", "save_tokenizer", "train"]

END_OF_TEXT = "<|endoftext|>"
HELDOUT_FRACTION = 0.10  # the last 10% of the characters: a contiguous, unseen stretch of the text
# Held-out perplexity is averaged over at most this many tokens: enough for two significant digits, and a
# pass over it takes seconds on a CPU.
EVAL_TOKENS = 16_384


class TrainOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(2048, ge=257, le=65_536)  # 256 byte symbols + end-of-text at least
    n_layer: int = Field(4, ge=1, le=48)
    n_embd: int = Field(128, ge=8, le=4096)
    n_head: int = Field(4, ge=1, le=64)
    context: int = Field(128, ge=8, le=8192)  # n_positions: the longest prompt + completion the model takes
    batch_size: int = Field(16, ge=1, le=4096)  # small batches, more steps: what minutes of CPU favour
    steps: int = Field(2000, ge=1)
    minutes: float | None = Field(None, gt=0)  # a time budget; training stops at `steps` or here
    learning_rate: float = Field(3e-3, gt=0, le=1)
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    license: str | None = None
    data_source: str | None = None

    @classmethod
    def parse(cls, value: TrainOptions | dict[str, Any] | None) -> TrainOptions:
        """Options from a mapping; a bad value is a ConfigError naming the option."""
        if isinstance(value, cls):
            return value
        try:
            return cls.model_validate(dict(value or {}))
        except ValidationError as exc:
            raise ConfigError(f"invalid LLM training options: {pydantic_message(exc)}") from None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TrainOptions:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


def read_text(data: Any) -> tuple[str, bytes, Path]:
    """The training text of a file; anything but a readable, non-empty UTF-8 file is a DataError."""
    if not isinstance(data, (str, Path)):
        raise DataError(f"training data must be the path of a UTF-8 text file, not {type(data).__name__}")
    path = Path(data)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read training text {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"training text {path} is not UTF-8: undecodable byte at offset {exc.start}") from None
    if not text.strip():
        raise DataError(f"training text {path} is empty")
    return text, raw, path


def train(data: Any, options: TrainOptions, progress: Progress | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, training metadata) from a text file; the caller's torch RNG state is left alone."""
    import torch

    from gensdk.device import resolve_device

    text, raw, path = read_text(data)
    split = int(len(text) * (1 - HELDOUT_FRACTION))
    train_text, heldout_text = text[:split], text[split:]
    device = resolve_device(options.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        tokenizer = _train_tokenizer(train_text, options.vocab_size)
        train_ids, heldout_ids = _token_tensor(tokenizer, train_text), _token_tensor(tokenizer, heldout_text)
        _check_sizes(path, train_ids, heldout_ids, options)
        model = _new_model(tokenizer, options).to(device)
        before = _perplexity(model, heldout_ids, options.context, device)
        report = _optimise(model, train_ids, options, device, progress)
        after = _perplexity(model, heldout_ids, options.context, device)
    model = model.cpu().eval()
    training = {
        "data_path": str(path.resolve()), "data_sha256": sha256_hex(raw), "data_chars": len(text),
        "train_chars": len(train_text), "heldout_chars": len(heldout_text),
        "train_tokens": int(train_ids.numel()), "heldout_tokens": int(heldout_ids.numel()),
        "tokenizer_vocab_size": len(tokenizer), "license": options.license,
        "data_source": options.data_source or str(path), "options": options.model_dump(mode="json"),
        "heldout_perplexity_before": before, "heldout_perplexity_after": after, **report,
    }
    return model, tokenizer, training


def _train_tokenizer(text: str, vocab_size: int) -> Any:
    """Byte-level BPE as GPT-2 does it: any byte sequence encodes, nothing is ever <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   pad_token=END_OF_TEXT)


def _token_tensor(tokenizer: Any, text: str) -> Any:
    import torch

    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def _check_sizes(path: Path, train_ids: Any, heldout_ids: Any, options: TrainOptions) -> None:
    need = options.context + 1
    if train_ids.numel() < need or heldout_ids.numel() < 2:
        raise DataError(
            f"training text {path} is too short: {train_ids.numel()} training and {heldout_ids.numel()} held-out "
            f"tokens; a context of {options.context} needs at least {need} training tokens"
        )


def _new_model(tokenizer: Any, options: TrainOptions) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    eot = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=options.context, n_embd=options.n_embd, n_layer=options.n_layer,
        n_head=options.n_head, bos_token_id=eot, eos_token_id=eot,
        # No dropout: minutes of training on ~1 MB is far from over-fitting.
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # GPT2LMHeadModel's name does not say it, and transformers warns when it guesses
    model.generation_config.bos_token_id = eot
    model.generation_config.eos_token_id = eot
    model.generation_config.pad_token_id = eot
    return model


def _optimise(model: Any, ids: Any, options: TrainOptions, device: str, progress: Progress | None) -> dict[str, Any]:
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices decay; biases and norms do not
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": options.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=options.learning_rate, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(options.seed)
    budget = options.minutes * 60 if options.minutes else math.inf
    started, smoothed, step = time.perf_counter(), None, 0
    model.train()
    while True:
        step += 1
        done = max(step / options.steps, (time.perf_counter() - started) / budget)
        lr = _learning_rate(options, step, min(done, 1.0))
        for group in optimiser.param_groups:
            group["lr"] = lr
        loss = _train_step(model, optimiser, ids, options, device, generator)
        smoothed = loss if smoothed is None else 0.95 * smoothed + 0.05 * loss
        elapsed = time.perf_counter() - started
        total = options.steps if budget == math.inf else min(options.steps, max(step, int(step * budget / elapsed)))
        if progress:
            progress(step, total, f"loss {smoothed:.3f}  lr {lr:.1e}")
        if step >= options.steps or elapsed >= budget:
            break
    model.eval()
    return {"steps": step, "seconds": round(time.perf_counter() - started, 1),
            "tokens_seen": step * options.batch_size * options.context, "final_train_loss": round(smoothed, 4)}


def _learning_rate(options: TrainOptions, step: int, done: float) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak over the step or time budget."""
    warm = min(1.0, step / options.warmup_steps) if options.warmup_steps else 1.0
    return options.learning_rate * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))


def _train_step(model: Any, optimiser: Any, ids: Any, options: TrainOptions, device: str, generator: Any) -> float:
    import torch

    starts = torch.randint(0, ids.numel() - options.context, (options.batch_size,), generator=generator)
    batch = torch.stack([ids[s : s + options.context] for s in starts.tolist()]).to(device)
    loss = model(input_ids=batch, labels=batch).loss  # HF shifts the labels: predict token t+1 from <= t
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return float(loss.item())


def _perplexity(model: Any, ids: Any, context: int, device: str) -> float:
    """exp(mean next-token loss) over non-overlapping held-out windows of the model's context length."""
    import torch

    ids = ids[:EVAL_TOKENS]
    width = min(context, ids.numel())
    windows = ids[: (ids.numel() // width) * width].view(-1, width)
    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad():
        for chunk in windows.split(8):
            chunk = chunk.to(device)
            losses.append(model(input_ids=chunk, labels=chunk).loss.item() * chunk.shape[0])
    model.train(was_training)
    return round(math.exp(sum(losses) / windows.shape[0]), 3)


def save_tokenizer(tokenizer: Any, path: Path, context: int | None) -> None:
    """Save beside the model. A tokenizer gensdk trained is declared `PreTrainedTokenizerFast` (what
    transformers 4.x and 5.x both load from tokenizer.json), not transformers 5's internal backend class."""
    if context:
        tokenizer.model_max_length = context
    tokenizer.save_pretrained(path)
    config_path = Path(path) / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
