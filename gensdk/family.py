"""Model family base class and the on-disk manifest every gensdk-trained model carries.

A family is a class with its capabilities as class attributes and one public `generate()` that validates the
request and calls the single private step `_generate()`. Families that learn from user data implement `fit()`;
every family saves to and loads from a directory: `gensdk_model.json` (family, version, data schema, training
data fingerprint, declared licence and data source) beside safetensors weights.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from gensdk._canonical import digest_of, file_digest
from gensdk.errors import GenerationError, ModelLoadError, RequestError
from gensdk.outputs import Modality, Output
from gensdk.request import GenerationContext, Request, pydantic_message

__all__ = ["MANIFEST_NAME", "ModelFamily", "NoParams", "Progress", "read_manifest", "write_manifest"]

MANIFEST_NAME = "gensdk_model.json"

# Called as progress(done, total, message) during fit; the CLI passes a rich progress bar.
Progress = Callable[[int, int, str], None]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelFamily(ABC):
    """Base class of every model family (GMM, GAN, VAE, diffusion, LLM, third-party ...)."""

    id: ClassVar[str]
    version: ClassVar[str] = "0"
    modality: ClassVar[Modality]
    can_train: ClassVar[bool] = False
    can_stream: ClassVar[bool] = False
    conditional: ClassVar[bool] = False
    # Units (rows for tables, items otherwise) the engine puts in one micro-batch unless configured otherwise.
    default_batch_size: ClassVar[int] = 64
    Params: ClassVar[type[BaseModel]] = NoParams

    # Set by load() for models read from disk; identity() reports them to the audit trail.
    source_path: Path | None = None
    weights_digest: str | None = None

    def check_request(self, request: Request) -> BaseModel:
        """Everything this family can reject before generating: its params, then the request itself."""
        params = self.parse_params(request.params)
        self.validate_request(request)
        return params

    def generate(self, request: Request, context: GenerationContext) -> list[Output]:
        """Validate the request for this family, generate, and check the family kept its contract."""
        params = self.check_request(request)
        try:
            outputs = self._generate(request, params, context)
        except (RequestError, GenerationError):
            raise
        except Exception as exc:  # a failure deep inside torch becomes one typed, readable error
            raise GenerationError(f"{self.id} failed while generating: {type(exc).__name__}: {exc}") from exc
        for output in outputs:
            if output.modality != self.modality:
                raise GenerationError(f"{self.id} returned a {output.modality} output; it declares {self.modality}")
        return list(outputs)

    def parse_params(self, params: Mapping[str, Any]) -> BaseModel:
        try:
            return self.Params.model_validate(dict(params))
        except ValidationError as exc:
            raise RequestError(f"invalid params for model family {self.id!r}: {pydantic_message(exc)}") from None

    def validate_request(self, request: Request) -> None:
        """Reject what this family cannot honour. Families extend this (known condition columns, ...)."""
        if request.conditions and not self.conditional:
            raise RequestError(f"model family {self.id!r} is not conditional; remove 'conditions'")

    def split(self, request: Request, batch_size: int) -> list[Request]:
        """Micro-batches of at most `batch_size` units (rows for tables, items otherwise). Families whose
        outputs follow prompts one to one override this to split the prompts too."""
        full, rest = divmod(request.n, batch_size)
        sizes = [batch_size] * full + ([rest] if rest else [])
        return [request.model_copy(update={"n": size}) for size in sizes]

    @abstractmethod
    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        """Produce `request.n` units on `context.device`, deterministically from `context.seed`."""

    def fit(self, data: Any, progress: Progress | None = None) -> ModelFamily:
        raise NotImplementedError(f"model family {self.id!r} cannot be trained")

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the model to a directory, creating it."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> ModelFamily:
        """Read a model from a directory written by `save` (or a standard directory the family knows)."""

    @classmethod
    def read_own_manifest(cls, path: Path) -> dict[str, Any]:
        """The directory's manifest, refusing one written by another family."""
        manifest = read_manifest(path)
        if manifest["family"] != cls.id:
            raise ModelLoadError(f"{path} holds a {manifest['family']!r} model, not a {cls.id} model")
        return manifest

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        """True when `path` is a directory this family loads though it has no gensdk manifest (HF layouts)."""
        return False

    def training_reference(self) -> Any:
        """What the family kept of its training data for memorisation checks (a
        `gensdk.reference.TrainingReference`), or None when it kept nothing: the default."""
        return None

    def identity(self) -> dict[str, Any]:
        """Model identity for the audit trail: family, version, weights digest, config digest, source."""
        config = self.config()
        return {
            "family": self.id,
            "family_version": self.version,
            "weights_digest": self.weights_digest,
            "config_digest": digest_of(config),
            "path": str(self.source_path) if self.source_path else None,
            "license": config.get("license"),
            "data_source": config.get("data_source"),
        }

    def config(self) -> dict[str, Any]:
        """The JSON-serialisable configuration that `save` writes and `identity` digests."""
        return {}


def write_manifest(path: Path, family: type[ModelFamily], body: Mapping[str, Any]) -> None:
    from gensdk import __version__

    manifest = {
        "family": family.id,
        "family_version": family.version,
        "gensdk_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **body,
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read `gensdk_model.json`; a missing or unreadable one is a ModelLoadError naming the file."""
    manifest_path = Path(path) / MANIFEST_NAME
    if not Path(path).is_dir():
        raise ModelLoadError(f"model directory {path} does not exist or is not a directory")
    if not manifest_path.is_file():
        raise ModelLoadError(f"{path} is not a gensdk model directory: {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{manifest_path} is corrupted: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("family"), str):
        raise ModelLoadError(f"{manifest_path} is corrupted: it names no model family")
    return manifest


def weights_digest(path: Path) -> str:
    return file_digest(path)
