"""The `echo` text family: repeats each prompt followed by a few words drawn from a tiny vocabulary.

It is deliberately trivial, but a fair family all the same: capabilities as class attributes, one private
`_generate`, typed params, outputs determined by the seed and the prompt, and a model directory of
`gensdk_model.json` (the vocabulary) beside `echo.safetensors` (the log-weights of the vocabulary).

A prompt written in capitals is echoed in capitals, words and all: the `no-shouting` policy has something to
catch.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gensdk import ModelLoadError, RequestError, TextOutput
from gensdk.family import ModelFamily, read_manifest, weights_digest, write_manifest
from gensdk.outputs import Output
from gensdk.request import GenerationContext, Request

__all__ = ["EchoFamily", "EchoParams"]

WEIGHTS_NAME = "echo.safetensors"
DEFAULT_VOCABULARY = ("echo", "hello", "again", "softly", "river", "stone", "light", "wind")


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    words: int = Field(4, ge=1, le=64)


class EchoFamily(ModelFamily):
    id: ClassVar[str] = "echo"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "text"  # type: ignore[assignment]
    default_batch_size: ClassVar[int] = 16
    Params: ClassVar[type[BaseModel]] = EchoParams

    def __init__(self, vocabulary: Sequence[str] = DEFAULT_VOCABULARY, logits: Any = None):
        self.vocabulary = list(vocabulary)
        if not self.vocabulary or not all(isinstance(w, str) and w for w in self.vocabulary):
            raise ValueError("the vocabulary must be a non-empty list of non-empty words")
        default = np.linspace(0.0, 1.0, len(self.vocabulary))  # a visible preference, not a uniform draw
        self.logits = np.asarray(default if logits is None else logits, dtype=np.float32)
        if self.logits.shape != (len(self.vocabulary),) or not np.isfinite(self.logits).all():
            raise ValueError(f"logits must be {len(self.vocabulary)} finite numbers, one per word")

    # -- generation -----------------------------------------------------------------------------------------

    def validate_request(self, request: Request) -> None:
        super().validate_request(request)
        if request.messages:
            raise RequestError("the echo family takes prompts, not chat messages")
        if request.prompts is not None and len(request.prompts) != request.n:
            raise RequestError(f"echo writes one text per prompt: n is {request.n}, prompts are {len(request.prompts)}")

    def split(self, request: Request, batch_size: int) -> list[Request]:
        if request.prompts is None or len(request.prompts) != request.n:
            return super().split(request, batch_size)  # generate() then rejects a prompt count that is off
        prompts = request.prompts
        return [
            request.model_copy(update={"n": len(chunk), "prompts": chunk})
            for chunk in (prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size))
        ]

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        probs = np.exp(self.logits - self.logits.max())
        probs /= probs.sum()
        outputs: list[Output] = []
        for i in range(request.n):
            prompt = request.prompts[i] if request.prompts is not None else None
            # One stream per (micro-batch seed, prompt, position): the same seed and prompt give the same text.
            rng = np.random.default_rng([context.seed, zlib.crc32((prompt or "").encode("utf-8")), i])
            words = [self.vocabulary[k] for k in rng.choice(len(self.vocabulary), size=params.words, p=probs)]
            text = " ".join(([prompt] if prompt else []) + words)
            outputs.append(TextOutput(text.upper() if prompt and prompt.isupper() else text, prompt=prompt))
        return outputs

    # -- persistence ----------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary, "license": "CC0-1.0", "data_source": "gensdk-example-plugin"}

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"logits": np.ascontiguousarray(self.logits)}, str(path / WEIGHTS_NAME))
        write_manifest(path, type(self), self.config())
        return path

    @classmethod
    def load(cls, path: str | Path) -> EchoFamily:
        path = Path(path)
        manifest = read_manifest(path)
        if manifest["family"] != cls.id:
            raise ModelLoadError(f"{path} holds a {manifest['family']!r} model, not an echo model")
        logits = _read_logits(path / WEIGHTS_NAME)
        try:
            model = cls(manifest.get("vocabulary", ()), logits)
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{path} is corrupted: {exc}") from None
        model.source_path = path
        model.weights_digest = weights_digest(path / WEIGHTS_NAME)
        return model


def _read_logits(path: Path) -> np.ndarray:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ModelLoadError("reading echo models needs safetensors: pip install safetensors") from None
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} is missing")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise ModelLoadError(f"weights file {path} is truncated or corrupted: {exc}") from None
    if "logits" not in tensors:
        raise ModelLoadError(f"weights file {path} has no 'logits' tensor")
    return tensors["logits"]
