"""Reading a local diffusers pipeline directory, refusing what could run code unless it is plain weights.

Checks run in the order a user can act on: the directory and its `model_index.json`, the pipeline class (only
the pipelines gensdk drives: DDPM/DDIM with a `UNet2DModel`, Stable-Diffusion-style text-to-image), code
shipped with the model (a custom pipeline, a component from a module that is not diffusers or transformers,
`auto_map` in a component's config), every component the pipeline needs, the weight files (safetensors, or
pickle only with `allow_pickle`) and their integrity. Only then diffusers' own `from_pretrained` runs on the
path (never a hub id: `local_files_only=True`), and the loaded components are checked to fit together.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from gensdk._canonical import digest_of, file_digest
from gensdk.errors import GensdkError, ModelLoadError

__all__ = ["SUPPORTED_PIPELINES", "TEXT_TO_IMAGE", "UNCONDITIONAL", "check_components_fit", "check_safetensors",
           "from_pretrained", "pipeline_spec", "quiet_diffusers", "refuse_remote_code", "weight_files",
           "weights_digest"]

log = logging.getLogger("gensdk.diffusion")

MODEL_INDEX = "model_index.json"
UNCONDITIONAL = frozenset({"DDPMPipeline", "DDIMPipeline"})
TEXT_TO_IMAGE = frozenset({"StableDiffusionPipeline"})
SUPPORTED_PIPELINES = UNCONDITIONAL | TEXT_TO_IMAGE
# Components each pipeline cannot run without; model_index.json must name them and their folders must exist.
REQUIRED_COMPONENTS = {
    "DDPMPipeline": ("unet", "scheduler"),
    "DDIMPipeline": ("unet", "scheduler"),
    "StableDiffusionPipeline": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
}
# Components that hold weights (the others are schedulers, tokenizers, feature extractors: configuration only).
WEIGHTED_COMPONENTS = frozenset({"unet", "vae", "text_encoder", "safety_checker", "image_encoder"})
TRUSTED_LIBRARIES = frozenset({"diffusers", "transformers"})
_WEIGHT_STEMS = ("diffusion_pytorch_model", "model", "pytorch_model")


def read_model_index(path: Path) -> dict[str, Any]:
    index_path = path / MODEL_INDEX
    if not index_path.is_file():
        raise ModelLoadError(f"{path} is not a diffusers pipeline directory: {MODEL_INDEX} is missing")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{index_path} is corrupted: {exc}") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{index_path} is corrupted: it holds a JSON {type(index).__name__}, not an object")
    return index


def components_of(index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{name: (library, class)} of the components model_index.json names; null entries (no safety checker) left out."""
    found = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, (list, tuple)) or len(spec) != 2:
            continue
        if spec[0] is None or spec[1] is None:
            continue
        found[name] = (str(spec[0]), str(spec[1]))
    return found


def pipeline_spec(path: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """The pipeline class and its components, after refusing unsupported pipelines and missing components."""
    index = read_model_index(path)
    class_name = index.get("_class_name")
    if isinstance(class_name, (list, tuple)):
        raise ModelLoadError(f"{path / MODEL_INDEX} names a custom pipeline {list(class_name)} whose code ships with "
                             "the model; gensdk never runs code from a model directory")
    if class_name not in SUPPORTED_PIPELINES:
        raise ModelLoadError(f"{path / MODEL_INDEX} describes a {class_name!r} pipeline; the diffusion family runs "
                             f"{', '.join(sorted(SUPPORTED_PIPELINES))}")
    components = components_of(index)
    missing = [name for name in REQUIRED_COMPONENTS[class_name] if name not in components]
    if missing:
        raise ModelLoadError(f"{path} is a {class_name} without its {', '.join(missing)}: {MODEL_INDEX} does not "
                             f"name {'it' if len(missing) == 1 else 'them'}")
    absent = [name for name in components if not (path / name).is_dir()]
    if absent:
        raise ModelLoadError(f"{path} is missing the component folder(s) {', '.join(absent)} that {MODEL_INDEX} names")
    return class_name, components


def refuse_remote_code(path: Path, components: dict[str, tuple[str, str]]) -> None:
    """Refuse components from modules other than diffusers/transformers, and configs asking for auto_map code."""
    foreign = [f"{name} ({library}.{cls})" for name, (library, cls) in components.items()
               if library not in TRUSTED_LIBRARIES]
    asking = [f"{name}/{file.name}" for name in components for file in sorted((path / name).glob("*.json"))
              if _has_auto_map(file)]
    if not foreign and not asking:
        return
    what = "; ".join(filter(None, [f"components from other modules: {', '.join(foreign)}" if foreign else "",
                                   f"auto_map in {', '.join(asking)}" if asking else ""]))
    raise ModelLoadError(f"{path} asks to run Python code shipped with the model ({what}); the diffusion family "
                         "never runs code from a model directory")


def _has_auto_map(file: Path) -> bool:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{file} is corrupted: {exc}") from None
    return isinstance(data, dict) and bool(data.get("auto_map"))


def weight_files(path: Path, components: dict[str, tuple[str, str]], allow_pickle: bool) -> tuple[list[Path], bool]:
    """Every weight file diffusers will read, and whether any is pickle. A component with safetensors uses
    them; one with only `*.bin` is refused unless allow_pickle; one with no weights at all is missing."""
    files, pickled = [], []
    for name in sorted(set(components) & WEIGHTED_COMPONENTS):
        folder = path / name
        safe = sorted(p for p in folder.glob("*.safetensors") if p.name.startswith(_WEIGHT_STEMS))
        pickle = sorted(p for p in folder.glob("*.bin") if p.name.startswith(_WEIGHT_STEMS))
        if safe:
            files += safe
        elif pickle:
            files += pickle
            pickled.append(name)
        else:
            raise ModelLoadError(f"component {name!r} of {path} has no weights (no *.safetensors file in {folder})")
    if pickled and not allow_pickle:
        raise ModelLoadError(
            f"{path} has only pickle weights for {', '.join(pickled)} (*.bin); unpickling can run arbitrary code, "
            "so gensdk refuses it by default. Convert them to safetensors, or pass allow_pickle=True "
            "(gensdk generate --allow-pickle); it is written to every audit record."
        )
    if pickled:
        log.warning("loading pickle weights of %s from %s (allow_pickle=True); recorded in the audit trail",
                    ", ".join(pickled), path)
    return files, bool(pickled)


def check_safetensors(files: list[Path]) -> None:
    """A truncated or garbled safetensors file fails here with its name, not deep inside diffusers."""
    from safetensors import safe_open

    for file in (f for f in files if f.suffix == ".safetensors"):
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own types for truncated or garbled headers
            raise ModelLoadError(f"weights file {file} is truncated or corrupted: {exc}") from None


def weights_digest(root: Path, files: list[Path]) -> str | None:
    """One sha256 over every weight file, keyed by its path inside the pipeline directory."""
    if not files:
        return None
    return digest_of({f.relative_to(root).as_posix(): file_digest(f) for f in files})


def from_pretrained(path: Path, pickled: bool) -> Any:
    from diffusers import DiffusionPipeline

    with quiet_diffusers():
        try:
            pipeline = DiffusionPipeline.from_pretrained(
                path, local_files_only=True, trust_remote_code=False,
                # None lets diffusers fall back to *.bin where a component has no safetensors: reached only
                # after weight_files() accepted pickle with allow_pickle.
                use_safetensors=None if pickled else True,
                torch_dtype=None,  # float32 as saved; the family casts to the engine's dtype on first use
            )
        except GensdkError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load the diffusers pipeline in {path}: {type(exc).__name__}: {exc}") from None
    pipeline.set_progress_bar_config(disable=True)  # gensdk shows its own progress
    return pipeline


def check_components_fit(pipeline: Any, where: Any) -> None:
    """Components that load one by one can still not fit together; say which, before a matmul fails."""
    unet = pipeline.unet
    vae = getattr(pipeline, "vae", None)
    encoder = getattr(pipeline, "text_encoder", None)
    if vae is not None and unet.config.in_channels != vae.config.latent_channels:
        raise ModelLoadError(f"{where}: the unet takes {unet.config.in_channels} input channels but the vae makes "
                             f"latents of {vae.config.latent_channels}; the components do not belong together")
    if encoder is not None and unet.config.cross_attention_dim != encoder.config.hidden_size:
        raise ModelLoadError(f"{where}: the unet attends to text features of width {unet.config.cross_attention_dim} "
                             f"but the text encoder makes {encoder.config.hidden_size}; the components do not "
                             "belong together")
    if vae is None and unet.config.in_channels != unet.config.out_channels:
        raise ModelLoadError(f"{where}: the unet takes {unet.config.in_channels} channels but predicts "
                             f"{unet.config.out_channels}; the unconditional sampler needs them equal")


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """No per-component progress bars or accelerate hints while loading: gensdk reports what matters itself."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    level = diffusers_logging.get_verbosity()
    bars = diffusers_logging.is_progress_bar_enabled()
    hf_bars = hf_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
        if bars:
            diffusers_logging.enable_progress_bar()
        if hf_bars:
            hf_logging.enable_progress_bar()
