"""The diffusion family: local diffusers pipelines (unconditional, class-conditional, text-to-image) behind the
policies, and the small DDPMs that `gensdk train diffusion` makes.

Loading is a security boundary (see `loading.py`): safetensors only unless `allow_pickle=True`, never code
shipped with a model. The weights digest, the pipeline class, each component's config digest and the unsafe-load
flags are part of `identity()`, hence of every audit record.

A model directory is a standard diffusers pipeline directory, which plain `DiffusionPipeline.from_pretrained`
loads. Models gensdk trained carry a `gensdk_model.json` beside it: licence, training-data source, class names
and shares, training figures, and the sampling defaults (scheduler, steps, guidance) they were measured with.

Requests: `params` choose the scheduler (ddpm, ddim, dpm-solver++, euler; default the directory's own), steps,
guidance scale, negative prompt and size; `prompts` (text-to-image, `n` images per prompt) or
`conditions={"class": ...}` (class-conditional). The micro-batch seed gives the generator: same seed, same
images. Policies take part through `gensdk.processors`: one may supply the starting noise (`InitialNoise`),
any may watch or steer every step (`StepCallback`).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from gensdk._canonical import digest_of
from gensdk.errors import ModelLoadError, RequestError
from gensdk.family import MANIFEST_NAME, ModelFamily, Progress, write_manifest
from gensdk.outputs import ImageOutput, Output
from gensdk.processors import InitialNoise, StepCallback, single_initial_noise
from gensdk.request import GenerationContext, Request
from gensdk_diffusion import loading
from gensdk_diffusion.sampling import Sampling, denoise, make_scheduler, text_to_image

if TYPE_CHECKING:
    from gensdk_diffusion.train import TrainOptions

__all__ = ["DiffusionFamily", "DiffusionParams"]

CONDITION_KEYS = ("class", "label")
# Used where neither the request nor the model's manifest says otherwise (diffusers' own defaults for SD).
DEFAULT_STEPS = 50
DEFAULT_TEXT_GUIDANCE = 7.5
# Stable Diffusion's pipeline refuses sizes that are not multiples of 8, whatever the VAE's factor.
SD_SIZE_MULTIPLE = 8


class DiffusionParams(BaseModel):
    """Sampling options; None means the model's default (its manifest's sampling defaults, else diffusers')."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: Literal["ddpm", "ddim", "dpm-solver++", "euler"] | None = None  # None: the directory's own
    steps: int | None = Field(None, ge=1, le=10_000)
    guidance_scale: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    negative_prompt: str | None = None
    height: int | None = Field(None, ge=1, le=8192)
    width: int | None = Field(None, ge=1, le=8192)


class DiffusionFamily(ModelFamily):
    id: ClassVar[str] = "diffusion"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "image"  # type: ignore[assignment]
    can_train: ClassVar[bool] = True
    # Class-conditional models take conditions={"class": ...}; validate_request refuses them for the others.
    conditional: ClassVar[bool] = True
    # Images per micro-batch: Stable Diffusion at 512x512 needs about 1 GB of activations per image in fp16.
    default_batch_size: ClassVar[int] = 16
    Params: ClassVar[type[BaseModel]] = DiffusionParams

    def __init__(self, pipeline: Any = None, *, train_options: TrainOptions | dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None):
        """Wrap an in-memory diffusers pipeline (`DDPMPipeline`, `DDIMPipeline`, `StableDiffusionPipeline`), or
        start empty and `fit()` a small DDPM on images."""
        self.train_options = None
        if train_options is not None:
            from gensdk_diffusion.train import TrainOptions

            self.train_options = TrainOptions.parse(train_options)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.unsafe_load = {"allow_pickle": False, "pickle_weights_loaded": False}
        self.pipeline: Any = None
        self.reference: Any = None  # the memorisation reference of a model gensdk trained (gensdk.reference)
        # One sampler at a time per model: a scheduler holds per-call state (timesteps, step index).
        self._lock = threading.RLock()
        self._schedulers: dict[str, Any] = {}
        self._placement: tuple[str, str] | None = None
        if pipeline is not None:
            self._attach(pipeline)

    def _attach(self, pipeline: Any) -> None:
        name = type(pipeline).__name__
        if name not in loading.SUPPORTED_PIPELINES:
            raise ModelLoadError(f"a {name} is not a pipeline the diffusion family runs; it runs "
                                 f"{', '.join(sorted(loading.SUPPORTED_PIPELINES))}")
        loading.check_components_fit(pipeline, f"this {name}")
        pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline
        self._schedulers = {}
        self._placement = None

    # -- what kind of model ---------------------------------------------------------------------------------

    @property
    def text_to_image(self) -> bool:
        return type(self.pipeline).__name__ in loading.TEXT_TO_IMAGE

    @property
    def classes(self) -> list[str]:
        """Class names of a class-conditional model ([] for the others)."""
        embeds = self.pipeline.unet.config.get("num_class_embeds") if self.pipeline is not None else None
        if not embeds or self.text_to_image:
            return []
        return [str(c) for c in self.metadata.get("classes") or range(embeds)]

    @property
    def kind(self) -> str:
        if self.text_to_image:
            return "text-to-image"
        return "class-conditional" if self.classes else "unconditional"

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        return dict(self.metadata.get("sampling") or {})

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        return (Path(path) / loading.MODEL_INDEX).is_file()

    # -- identity -------------------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        loaded = self.pipeline is not None
        ident.update(pipeline=type(self.pipeline).__name__ if loaded else None, kind=self.kind if loaded else None,
                     unsafe_load=dict(self.unsafe_load))
        return ident

    def config(self) -> dict[str, Any]:
        return {
            "pipeline": type(self.pipeline).__name__ if self.pipeline is not None else None,
            "components": self._component_digests(),
            "classes": self.classes if self.pipeline is not None else [],
            "sampling": self.sampling_defaults,
            "license": self.metadata.get("license"),
            "data_source": self.metadata.get("data_source"),
            "training_data_fingerprint": (self.metadata.get("training") or {}).get("data_sha256"),
        }

    def _component_digests(self) -> dict[str, str]:
        """A digest of each component's configuration: which architecture and noise schedule made an image."""
        digests = {}
        for name, component in (self.pipeline.components.items() if self.pipeline is not None else ()):
            config = getattr(component, "config", None)
            if config is None:
                continue
            # transformers configs serialise themselves; diffusers components (ConfigMixin) serialise their config
            serialised = hasattr(config, "to_json_string")
            text = config.to_json_string(use_diff=False) if serialised else component.to_json_string()
            data = json.loads(text)
            # What differs between the same model in memory, saved, and loaded elsewhere is not its identity
            # (transformers fills in `architectures` and `dtype` when it saves; the weights digest covers dtype).
            for volatile in ("_name_or_path", "_diffusers_version", "transformers_version", "_commit_hash",
                             "_use_default_values", "architectures", "dtype", "torch_dtype"):
                data.pop(volatile, None)
            digests[name] = digest_of(data)
        return digests

    # -- requests -------------------------------------------------------------------------------------------

    def validate_request(self, request: Request) -> None:
        super().validate_request(request)
        if self.pipeline is None:
            raise RequestError("this diffusion model has no weights yet; load a pipeline directory or call fit()")
        if request.messages:
            raise RequestError("a diffusion model takes prompts, not chat messages")
        if self.text_to_image:
            self._validate_text_request(request)
        else:
            if request.prompts:
                raise RequestError(f"this is a{'' if self.classes else 'n'} {self.kind} model "
                                   f"({type(self.pipeline).__name__}); it takes no prompt"
                                   + (": ask for a class with conditions={'class': ...}" if self.classes else ""))
            self.condition_label(request.conditions)

    def _validate_text_request(self, request: Request) -> None:
        if request.conditions:
            raise RequestError("a text-to-image model takes prompts, not conditions")
        if not request.prompts:
            raise RequestError("a text-to-image request needs at least one prompt (prompts=[...])")
        for i, prompt in enumerate(request.prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise RequestError(f"prompt {i} is empty")

    def condition_label(self, conditions: dict[str, Any]) -> int | None:
        """The class index asked for, or None; an unknown key or class is a RequestError naming it."""
        if not conditions:
            return None
        if not self.classes:
            raise RequestError(f"this {self.kind} model is not class-conditional; remove 'conditions'")
        unknown = [k for k in conditions if k not in CONDITION_KEYS]
        if unknown or len(conditions) > 1:
            raise RequestError(f"unknown condition {(unknown or list(conditions))[0]!r}: a class-conditional "
                               f"diffusion model takes one condition, 'class' (one of {', '.join(self.classes)})")
        value = str(next(iter(conditions.values())))
        if value not in self.classes:
            raise RequestError(f"unknown class {value!r}; the model knows: {', '.join(self.classes)}")
        return self.classes.index(value)

    def check_request(self, request: Request) -> BaseModel:
        """Params, the request, and every setting they resolve to (size, steps, guidance), before anything runs."""
        params = super().check_request(request)
        self._settings(params)
        return params

    def _settings(self, params: Any) -> tuple[str | None, Sampling]:
        """(scheduler name or None for the directory's own, resolved sampling settings); RequestError if the
        model cannot honour them."""
        defaults = self.sampling_defaults
        scheduler = params.scheduler or defaults.get("scheduler")
        steps = params.steps or defaults.get("steps") or DEFAULT_STEPS
        trained = self.pipeline.scheduler.config.get("num_train_timesteps")
        if trained and steps > trained:
            raise RequestError(f"steps={steps} is more than the {trained} noise levels the model was trained with")
        height, width = self._size(params)
        return scheduler, Sampling(steps=steps, guidance_scale=self._guidance(params, defaults), height=height,
                                   width=width, negative_prompt=params.negative_prompt)

    def _guidance(self, params: Any, defaults: dict[str, Any]) -> float:
        if self.text_to_image:
            scale = params.guidance_scale if params.guidance_scale is not None else \
                defaults.get("guidance_scale", DEFAULT_TEXT_GUIDANCE)
        else:
            if params.negative_prompt is not None:
                raise RequestError(f"negative_prompt needs a text-to-image model; this one is {self.kind}")
            if params.guidance_scale is not None and not self._guidable():
                raise RequestError(f"guidance_scale needs a text-to-image model or a class-conditional one trained "
                                   f"with a null class; this one is {self.kind}")
            scale = params.guidance_scale if params.guidance_scale is not None else defaults.get("guidance_scale", 1.0)
        if params.negative_prompt is not None and scale <= 1:
            raise RequestError(f"negative_prompt has no effect at guidance_scale={scale:g}; guidance needs a scale "
                               "above 1")
        return float(scale)

    def _guidable(self) -> bool:
        return bool(self.classes) and self.metadata.get("null_class") is not None

    def _size(self, params: Any) -> tuple[int, int]:
        """(height, width) in pixels: the request's, else the model's native size; checked against what the
        networks can divide."""
        unet = self.pipeline.unet.config
        native = unet.sample_size if isinstance(unet.sample_size, (list, tuple)) else (unet.sample_size,) * 2
        if self.text_to_image:
            factor = self.pipeline.vae_scale_factor
            native = tuple(s * factor for s in native)
            multiple = math.lcm(SD_SIZE_MULTIPLE, factor)
            reason = f"the VAE downsamples by {factor} and the pipeline needs multiples of {SD_SIZE_MULTIPLE}"
        else:
            multiple = 2 ** (len(unet.down_block_types) - 1)
            reason = f"the unet halves the image {len(unet.down_block_types) - 1} times"
        sizes = (params.height or native[0], params.width or native[1])
        for what, value in zip(("height", "width"), sizes):
            if value % multiple:
                raise RequestError(f"{what}={value} is not a multiple of {multiple} ({reason})")
        return sizes

    def split(self, request: Request, batch_size: int) -> list[Request]:
        """Text-to-image: split the prompt list, each micro-batch at most `batch_size` images (prompts x n)."""
        if not request.prompts:
            return super().split(request, batch_size)
        items = list(request.prompts)
        if request.n > batch_size:  # one prompt per micro-batch, its n images split too
            full, rest = divmod(request.n, batch_size)
            sizes = [batch_size] * full + ([rest] if rest else [])
            return [request.model_copy(update={"prompts": [p], "n": size}) for p in items for size in sizes]
        per = max(1, batch_size // request.n)
        return [request.model_copy(update={"prompts": items[i : i + per]}) for i in range(0, len(items), per)]

    # -- generation -----------------------------------------------------------------------------------------

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        import torch

        scheduler_name, settings = self._settings(params)
        noise = single_initial_noise(context.take(InitialNoise))
        callbacks = context.take(StepCallback)
        # The engine already samples under inference_mode; this covers callers of generate() outside it.
        with self._lock, torch.inference_mode():
            pipeline = self._placed(context)
            scheduler = self._scheduler(scheduler_name)
            generator = context.torch_generator()
            if self.text_to_image:
                context.conditions_per_item()  # all empty: a text-to-image model takes prompts, not conditions
                with _scheduler_in(pipeline, scheduler):
                    pixels, nsfw = text_to_image(pipeline, list(request.prompts or []), request.n, settings,
                                                 generator, noise, callbacks)
                metadata = [{"prompt": p} for p in request.prompts or [] for _ in range(request.n)]
                for meta, flagged in zip(metadata, nsfw or []):
                    meta["nsfw_content_detected"] = bool(flagged)
            else:
                labels = self._labels(context)
                pixels = denoise(pipeline.unet, scheduler, request.n, settings, generator, noise, callbacks,
                                 labels=labels, null_label=self.metadata.get("null_class"))
                metadata = [{"class": self.classes[int(c)]} for c in labels] if labels is not None else \
                    [{} for _ in range(request.n)]
        return [ImageOutput(p, metadata=m) for p, m in zip(pixels, metadata)]

    def _labels(self, context: GenerationContext) -> Any:
        """Class labels of a class-conditional model, one per image: the class asked for, else a draw from the
        training class shares (uniform where the model has none recorded); None for an unconditional model.
        Requests for different classes that share one call each keep their own (`conditions_per_item`)."""
        import torch

        asked = [self.condition_label(conditions) for conditions in context.conditions_per_item()]
        if not self.classes:
            return None
        labels = torch.tensor([-1 if a is None else a for a in asked], dtype=torch.int64)
        open_items = [i for i, a in enumerate(asked) if a is None]
        if open_items:
            shares = self.metadata.get("class_shares") or {}
            prior = torch.tensor([float(shares.get(c, 1.0)) for c in self.classes], dtype=torch.float64)
            # A CPU generator of its own: the device generator's draws stay those of the noise, as in diffusers.
            labels[open_items] = torch.multinomial(prior, len(open_items), replacement=True,
                                                   generator=torch.Generator().manual_seed(context.seed))
        return labels

    def _scheduler(self, name: str | None) -> Any:
        if name is None:
            return self.pipeline.scheduler
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self.pipeline.scheduler.config)
        return self._schedulers[name]

    def _placed(self, context: GenerationContext) -> Any:
        """The pipeline on the engine's device and dtype (moved once, on first use)."""
        import torch

        wanted = (context.device, context.dtype)
        if self._placement != wanted:
            with loading.quiet_diffusers():  # diffusers warns about every dtype cast, even a no-op one
                self.pipeline.to(torch.device(context.device), getattr(torch, context.dtype))
            self._placement = wanted
        return self.pipeline

    def sample(self, n: int, seed: int = 0, **request: Any) -> Any:
        """(n, C, H, W) pixels straight from the model, on the CPU in float32: for measuring a model (benchmarks,
        diagnostics). What users are handed goes through `Engine.generate`, and so through the policies."""
        import torch

        req = Request(n=n, seed=seed, **request)
        params = self.check_request(req)
        context = GenerationContext(request=req, seed=seed, device="cpu", dtype="float32", modality="image",
                                    model_info={}, model=self)
        outputs = self._generate(req, params, context)
        return torch.stack([o.pixels for o in outputs])

    # -- training and persistence ---------------------------------------------------------------------------

    def fit(self, data: Any, progress: Progress | None = None) -> DiffusionFamily:
        """Train a small DDPM (optionally class-conditional) on images: 'digits', a folder, or ImageData."""
        from gensdk_diffusion.train import TrainOptions, train

        pipeline, metadata, self.reference = train(data, TrainOptions.parse(self.train_options), progress)
        self._attach(pipeline)
        self.metadata = metadata
        self.source_path, self.weights_digest = None, None
        return self

    def training_reference(self) -> Any:
        return self.reference

    def save(self, path: str | Path) -> Path:
        """A standard diffusers directory (model_index.json, component folders, safetensors) plus gensdk_model.json
        (and the memorisation reference of a model gensdk trained)."""
        from gensdk.reference import TrainingReference

        if self.pipeline is None:
            raise RequestError("nothing to save: this diffusion model has no weights yet")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with loading.quiet_diffusers():
            self.pipeline.save_pretrained(path, safe_serialization=True)
        write_manifest(path, type(self), {"pipeline": type(self.pipeline).__name__, **self.metadata})
        TrainingReference.save_or_clear(self.reference, path)
        _, components = loading.pipeline_spec(path)
        self.weights_digest = loading.weights_digest(path, loading.weight_files(path, components, False)[0])
        return path

    @classmethod
    def load(cls, path: str | Path, allow_pickle: bool = False, trust_remote_code: bool = False) -> DiffusionFamily:
        """Load a local diffusers pipeline directory; refuses pickle weights unless allowed, and remote code always."""
        from gensdk.reference import TrainingReference

        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"model directory {path} does not exist or is not a directory")
        if trust_remote_code:
            raise ModelLoadError("the diffusion family never runs code shipped with a model; load without "
                                 "trust_remote_code (--trust-remote-code)")
        metadata = cls._gensdk_metadata(path)
        _, components = loading.pipeline_spec(path)
        loading.refuse_remote_code(path, components)
        files, pickled = loading.weight_files(path, components, allow_pickle)
        loading.check_safetensors(files)
        pipeline = loading.from_pretrained(path, pickled)
        family = cls(pipeline, metadata=metadata)
        family.reference = TrainingReference.load(path)
        family.source_path = path
        family.weights_digest = loading.weights_digest(path, files)
        family.unsafe_load = {"allow_pickle": allow_pickle, "pickle_weights_loaded": pickled}
        return family

    @classmethod
    def _gensdk_metadata(cls, path: Path) -> dict[str, Any]:
        if not (path / MANIFEST_NAME).exists():
            return {}
        manifest = cls.read_own_manifest(path)
        generic = ("family", "family_version", "gensdk_version", "created", "pipeline")
        return {k: v for k, v in manifest.items() if k not in generic}


@contextlib.contextmanager
def _scheduler_in(pipeline: Any, scheduler: Any) -> Iterator[None]:
    """The request's scheduler in the pipeline for one call; the model's own is back afterwards (save() writes it)."""
    own = pipeline.scheduler
    if scheduler is own:
        yield
        return
    pipeline.scheduler = scheduler
    try:
        yield
    finally:
        pipeline.scheduler = own

