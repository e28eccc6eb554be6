"""A mock model family and policy doubles: real gensdk objects with predictable behaviour."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from pydantic import Field

from gensdk._markers import hookimpl
from gensdk.family import ModelFamily, read_manifest, write_manifest
from gensdk.outputs import Output, TextOutput
from gensdk.policy import Policy, PolicyOptions
from gensdk.request import GenerationContext, Request
from gensdk.verdicts import Finding


@dataclass
class MarkerProcessor:
    """A generation-time processor: the mock family appends `marker` to every text it generates."""

    marker: str


class MockFamily(ModelFamily):
    """Text family that returns queued texts first, then deterministic texts derived from the seed."""

    id: ClassVar[str] = "mock"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "text"  # type: ignore[assignment]
    default_batch_size: ClassVar[int] = 8

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.history: list[Request] = []

    def enqueue(self, *texts: str) -> MockFamily:
        self.queue.extend(texts)
        return self

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        self.history.append(request)
        markers = "".join(p.marker for p in context.take(MarkerProcessor))
        texts = [self.queue.popleft() if self.queue else f"text {context.seed}-{i}" for i in range(request.n)]
        return [TextOutput(t + markers, prompt=(request.prompts or [None])[0]) for t in texts]

    def save(self, path: str | Path) -> Path:
        write_manifest(Path(path), type(self), {"queue": list(self.queue)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> MockFamily:
        model = cls().enqueue(*read_manifest(path).get("queue", []))
        model.source_path = Path(path)
        return model


class InMemoryFamily(ModelFamily):
    """Base of a family that exists only in memory, as tests and benchmarks build them (a "generator" that
    replays its training rows, say): it hands policies the training reference it was given (the memorisation
    policy asks for it) and cannot be saved or loaded. A subclass supplies `id`, `modality` and `_generate`."""

    version: ClassVar[str] = "1"

    def __init__(self, reference: Any = None) -> None:
        self.reference = reference

    def training_reference(self) -> Any:
        return self.reference

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError(f"family {self.id!r} lives in memory only: it cannot be saved")

    @classmethod
    def load(cls, path: str | Path) -> InMemoryFamily:
        raise NotImplementedError(f"family {cls.id!r} lives in memory only: it cannot be loaded")


class NoopPolicy(Policy):
    """Implements every pipeline hook and does nothing: measures the pipeline's own cost."""

    id = "noop"
    version = "1"

    @hookimpl
    def check_request(self, request: Request, context: GenerationContext) -> None:
        return None

    @hookimpl
    def prepare_generation(self, request: Request, context: GenerationContext) -> None:
        return None

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> None:
        return None

    @hookimpl
    def inspect_output(self, outputs: list[Output], context: GenerationContext) -> None:
        return None


class RecordingPolicy(Policy):
    """Records every hook call: (hook name, number of outputs, their digests)."""

    id = "recording"
    version = "1"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int, list[str]]] = []

    @hookimpl
    def check_request(self, request: Request, context: GenerationContext) -> None:
        self.calls.append(("check_request", 0, []))

    @hookimpl
    def inspect_output(self, outputs: list[Output], context: GenerationContext) -> None:
        self.calls.append(("inspect_output", len(outputs), [o.digest() for o in outputs]))

    def seen_digests(self) -> list[str]:
        return [d for hook, _, digests in self.calls if hook == "inspect_output" for d in digests]


class RaisingPolicy(Policy):
    """Raises in the hook its options name."""

    id = "raising"
    version = "1"

    class Options(PolicyOptions):
        hook: Literal["check_request", "prepare_generation", "transform_output", "inspect_output"] = "inspect_output"
        message: str = "policy failure for testing"

    def _maybe_raise(self, hook: str) -> None:
        if self.options.hook == hook:
            raise RuntimeError(self.options.message)

    @hookimpl
    def check_request(self, request: Request, context: GenerationContext) -> None:
        self._maybe_raise("check_request")

    @hookimpl
    def prepare_generation(self, request: Request, context: GenerationContext) -> None:
        self._maybe_raise("prepare_generation")

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> None:
        self._maybe_raise("transform_output")

    @hookimpl
    def inspect_output(self, outputs: list[Output], context: GenerationContext) -> None:
        self._maybe_raise("inspect_output")


class SlowPolicy(Policy):
    """Sleeps in inspect_output: exercises time limits."""

    id = "slow"
    version = "1"

    class Options(PolicyOptions):
        seconds: float = Field(1.0, ge=0)

    @hookimpl
    def inspect_output(self, outputs: list[Output], context: GenerationContext) -> None:
        time.sleep(self.options.seconds)


class KeywordPolicy(Policy):
    """Flags prompts and outputs that contain any of `words` (text, or any cell of a table)."""

    id = "keyword"
    version = "1"

    class Options(PolicyOptions):
        words: list[str] = Field(default_factory=list)

    def _hits(self, text: str) -> list[str]:
        return [w for w in self.options.words if w in text]

    @hookimpl
    def check_request(self, request: Request, context: GenerationContext) -> list[Finding]:
        text = " ".join(request.prompts or [])
        return [Finding("keyword-in-prompt", f"prompt contains {w!r}", violation=True) for w in self._hits(text)]

    @hookimpl
    def inspect_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        return [
            Finding("keyword", f"output contains {w!r}", violation=True, output_index=i)
            for i, output in enumerate(outputs)
            for w in self._hits(_as_text(output))
        ]


class ProcessorPolicy(Policy):
    """Contributes a MarkerProcessor; a family that does not apply it gets its outputs blocked."""

    id = "processor"
    version = "1"

    class Options(PolicyOptions):
        marker: str = " [marked]"

    @hookimpl
    def prepare_generation(self, request: Request, context: GenerationContext) -> list[Any]:
        return [MarkerProcessor(self.options.marker)]


def _as_text(output: Output) -> str:
    if hasattr(output, "text"):
        return output.text  # type: ignore[no-any-return]
    if hasattr(output, "frame"):
        return json.dumps(output.frame.astype(str).to_numpy().tolist())  # type: ignore[attr-defined]
    return ""
