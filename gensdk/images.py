"""Images in: folders of image files or scikit-learn's digits as tensors, with errors that name the file; and
the family base the neural image families (GAN, VAE) share: fit with a judge classifier for diagnostics,
class-conditional generation, save and load.

    data = load_image_folder("photos/")       # photos/<class>/*.png, or photos/*.png (one class)
    data = load_digits()                      # 1,797 8x8 greyscale digits, classes "0".."9"
    data.pixels                               # (N, C, H, W) float32 in [0, 1]; data.labels (N,), data.classes

Mode collapse shows as classes the model no longer produces: after training, a softmax-regression "judge"
fitted on the training images labels unconditional samples, and the per-class share of those labels goes into
the model's metadata (with how often a class-conditional sample is judged to be its class).

With `holdout_fraction` > 0 a seeded share of the images (at least `MIN_HOLDOUT_IMAGES`) is kept out of
training; those and the training images become the model's `ImageReference` (gensdk.reference), saved beside
the weights, against which the memorisation policy judges generated images. Too few images: nothing is held out
and no reference is kept (the memorisation policy then refuses the model).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from pydantic import Field

from gensdk.errors import ConfigError, DataError, ModelLoadError, RequestError
from gensdk.weights import WEIGHTS_NAME, TrainingOptions, load_state, read_weights, save_net
from gensdk.family import MANIFEST_NAME, ModelFamily, Progress, weights_digest
from gensdk.outputs import ImageOutput, Output
from gensdk.request import GenerationContext, Request, validate_options

__all__ = ["ImageData", "NeuralImageFamily", "NeuralImageOptions", "as_image_data", "load_digits", "load_image_folder"]

log = logging.getLogger("gensdk.images")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# The networks halve the size twice (8x8 digits -> 2x2 features): sides must be multiples of 4.
SIZE_MULTIPLE = 4
CONDITION_KEYS = ("class", "label")
# Fewer held-out images than this say too little about how close fresh images lie to the training ones.
MIN_HOLDOUT_IMAGES = 50


@dataclass
class ImageData:
    pixels: Any  # torch float32 (N, C, H, W) in [0, 1]
    labels: Any  # torch int64 (N,), indices into classes
    classes: list[str]

    def __post_init__(self) -> None:
        if len(self.pixels) == 0:
            raise DataError("no images to train on")
        if self.pixels.ndim != 4:
            raise DataError(f"images must be (N, C, H, W); got shape {tuple(self.pixels.shape)}")
        _, _, h, w = self.pixels.shape
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise DataError(f"images are {h}x{w}; height and width must be multiples of {SIZE_MULTIPLE} (resize or pad them)")


def load_digits() -> ImageData:
    """scikit-learn's 8x8 digits (shipped with scikit-learn, nothing downloaded), scaled from 0..16 to [0, 1]."""
    import torch
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    pixels = torch.as_tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return ImageData(pixels, torch.as_tensor(digits.target, dtype=torch.int64), [str(i) for i in range(10)])


def load_image_folder(path: str | Path) -> ImageData:
    """`path/<class>/*.png` (one class per sub-folder) or `path/*.png` (one class). All images must have one
    size and one colour mode; the first that differs is named in the error."""
    import torch
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    groups = [(f.name, _image_files(f)) for f in folders] if folders else [(root.name, _image_files(root))]
    groups = [(name, files) for name, files in groups if files]
    if not groups:
        raise DataError(f"image folder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    arrays, labels, first = [], [], None
    for label, (_, files) in enumerate(groups):
        for file in files:
            try:
                with Image.open(file) as img:
                    img = img.convert("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB")
                    arr = np.asarray(img, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"image {file} cannot be read: {exc}") from None
            arr = arr[:, :, None] if arr.ndim == 2 else arr
            if first is None:
                first = (file, arr.shape)
            elif arr.shape != first[1]:
                raise DataError(f"image {file} is {_describe(arr.shape)} but {first[0]} is {_describe(first[1])}; "
                                "all images must have one size and colour mode")
            arrays.append(arr)
            labels.append(label)
    pixels = torch.as_tensor(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageData(pixels, torch.as_tensor(labels, dtype=torch.int64), [name for name, _ in groups])


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _describe(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]} {'greyscale' if shape[2] == 1 else 'RGB'}"


def as_image_data(data: Any) -> ImageData:
    """An ImageData, a folder path, the word "digits", or (pixels, labels[, classes]) arrays."""
    import torch

    if isinstance(data, ImageData):
        return data
    if isinstance(data, str) and data == "digits":
        return load_digits()
    if isinstance(data, (str, Path)):
        return load_image_folder(data)
    if isinstance(data, tuple) and len(data) in (2, 3):
        pixels = torch.as_tensor(np.asarray(data[0]), dtype=torch.float32)
        raw_labels = np.asarray(data[1])
        classes = list(data[2]) if len(data) == 3 else sorted({str(v) for v in raw_labels}, key=_natural)
        lookup = {c: i for i, c in enumerate(map(str, classes))}
        unknown = sorted({str(v) for v in raw_labels} - set(lookup))
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not among the classes {classes}")
        if len(raw_labels) != len(pixels):
            raise DataError(f"{len(pixels)} images but {len(raw_labels)} labels")
        if pixels.numel() and (pixels.min() < 0 or pixels.max() > 1):
            raise DataError("pixel values must lie in [0, 1]")
        labels = torch.as_tensor([lookup[str(v)] for v in raw_labels], dtype=torch.int64)
        return ImageData(pixels, labels, [str(c) for c in classes])
    raise DataError(f"cannot read images from a {type(data).__name__}: pass a folder, 'digits' or (pixels, labels)")


def _natural(value: str) -> tuple[int, Any]:
    return (0, int(value)) if value.lstrip("-").isdigit() else (1, value)


# -- the judge: a softmax regression on pixels, for diagnostics ---------------------------------------------


def fit_judge(data: ImageData, steps: int = 300, seed: int = 0) -> Any:
    """A linear classifier of the training images (full-batch Adam); labels samples for the diagnostics."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = data.pixels.flatten(1)
        judge = torch.nn.Linear(x.shape[1], len(data.classes))
        optim = torch.optim.Adam(judge.parameters(), lr=0.05, weight_decay=1e-4)
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(judge(x), data.labels)
            optim.zero_grad()
            loss.backward()
            optim.step()
    return judge.eval()


# -- the family base ------------------------------------------------------------------------------------------


class NeuralImageOptions(TrainingOptions):
    epochs: int = Field(100, ge=1, le=100_000)
    batch_size: int = Field(64, ge=2, le=100_000)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    # Unconditional samples labelled by the judge after training (class shares); 0 skips the diagnostic.
    diagnostic_samples: int = Field(1000, ge=0, le=1_000_000)
    # Share of the images kept out of training as the memorisation reference's fresh images; 0 keeps none.
    holdout_fraction: float = Field(0.05, ge=0, lt=1)


class NeuralImageFamily(ModelFamily):
    """Fit, class-conditional generation, diagnostics, save and load for a torch image model; a subclass
    supplies `_build()`, `_train_epoch()`, `_sample_pixels()` and may override `_validation_loss()`."""

    modality: ClassVar[str] = "image"  # type: ignore[assignment]
    can_train: ClassVar[bool] = True
    conditional: ClassVar[bool] = True
    default_batch_size: ClassVar[int] = 256
    Options: ClassVar[type[NeuralImageOptions]] = NeuralImageOptions

    def __init__(self, options: NeuralImageOptions | dict[str, Any] | None = None):
        self.options = validate_options(self.Options, options, f"{self.id} options")
        self.net: Any = None
        self.classes: list[str] = []
        self.class_prior: Any = None
        self.image_shape: tuple[int, int, int] = (0, 0, 0)
        self.metadata: dict[str, Any] = {}
        self.reference: Any = None

    def _build(self) -> Any:
        raise NotImplementedError

    def _train_epoch(self, images: Any, onehot: Any, gen: Any) -> dict[str, float]:
        raise NotImplementedError

    def _sample_pixels(self, onehot: Any, gen: Any) -> Any:
        raise NotImplementedError

    def _validation_loss(self, data: ImageData) -> float:
        """Default: how often the judge disagrees with the asked-for class on 32 samples per class."""
        import torch

        labels = torch.arange(len(self.classes)).repeat_interleave(32)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            pixels = self._sample_pixels(self._onehot(labels), gen).cpu()
            judged = self._judge(pixels.flatten(1)).argmax(1)
        return float((judged != labels).float().mean())

    # -- training -------------------------------------------------------------------------------------------

    def fit(self, data: Any, progress: Progress | None = None) -> NeuralImageFamily:
        import torch

        from gensdk.device import resolve_device

        from gensdk.reference import ImageReference

        data = as_image_data(data)
        opts = self.options
        if len(data.pixels) < 2:
            raise DataError(f"{len(data.pixels)} image is too few to train {self.id} (at least 2)")
        data, holdout = split_holdout_images(data, opts.holdout_fraction, opts.seed)
        self.classes, self.image_shape = list(data.classes), tuple(data.pixels.shape[1:])  # type: ignore[assignment]
        counts = torch.bincount(data.labels, minlength=len(self.classes)).double()
        self.class_prior = counts / counts.sum()
        self._judge = fit_judge(data, seed=opts.seed)
        device = resolve_device(opts.device)
        self._optims = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            self.net = self._build().to(device)
            history = self._run_epochs(data, device, progress)
        self.net.to("cpu").eval()
        judge_accuracy = float((self._judge(data.pixels.flatten(1)).argmax(1) == data.labels).float().mean())
        self.metadata = {"training_images": len(data.pixels), "holdout_images": 0 if holdout is None else len(holdout.pixels),
                         "classes": len(self.classes), **history, "judge_training_accuracy": round(judge_accuracy, 4)}
        if opts.diagnostic_samples:
            self.metadata.update(self.class_diagnostics(opts.diagnostic_samples))
        self.reference = None if holdout is None else ImageReference.build_images(data.pixels, holdout.pixels)
        return self

    def training_reference(self) -> Any:
        return self.reference

    def _run_epochs(self, data: ImageData, device: str, progress: Progress | None) -> dict[str, Any]:
        import torch

        opts = self.options
        images, onehot = data.pixels.to(device), self._onehot(data.labels).to(device)
        gen = torch.Generator().manual_seed(opts.seed)
        started, best, best_epoch, best_state, stopped = time.perf_counter(), np.inf, 0, None, "epochs"
        for epoch in range(1, opts.epochs + 1):
            self.net.train()
            losses = self._train_epoch(images, onehot, gen)
            self.net.eval()
            score = self._validation_loss(data) if (opts.patience or progress) else float("nan")
            if score < best:
                best, best_epoch = score, epoch
                best_state = copy.deepcopy(self.net.state_dict()) if opts.patience else None
            if progress:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
                progress(epoch, opts.epochs, f"{shown}, validation {score:.4f}")
            if opts.patience and epoch - best_epoch >= opts.patience:
                stopped = "early stopping"
                break
            if opts.time_budget_s and time.perf_counter() - started >= opts.time_budget_s:
                stopped = "time budget"
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        elapsed = time.perf_counter() - started
        return {"epochs_run": epoch, "best_epoch": best_epoch, "stopped": stopped, "train_seconds": round(elapsed, 3),
                "seconds_per_epoch": round(elapsed / epoch, 4), "final_losses": {k: round(float(v), 5) for k, v in losses.items()}}

    def class_diagnostics(self, n: int) -> dict[str, Any]:
        """Mode-collapse diagnostic: the judge's labels of `n` unconditional samples, per class; and how
        often a sample asked for class c is judged to be c."""
        import torch

        gen = torch.Generator().manual_seed(self.options.seed)
        with torch.no_grad():
            labels = torch.multinomial(self.class_prior.float(), n, replacement=True, generator=gen)
            judged = self._judge(self._sample_pixels(self._onehot(labels), gen).cpu().flatten(1)).argmax(1)
        share = torch.bincount(judged, minlength=len(self.classes)).double() / n
        return {"class_share": {c: round(float(s), 4) for c, s in zip(self.classes, share)},
                "min_class_share": round(float(share.min()), 4),
                "conditional_agreement": round(float((judged == labels).float().mean()), 4)}

    def _onehot(self, labels: Any) -> Any:
        import torch

        return torch.nn.functional.one_hot(labels, len(self.classes)).float()

    # -- generation -----------------------------------------------------------------------------------------

    def validate_request(self, request: Request) -> None:
        super().validate_request(request)
        self._require_fitted()
        self.condition_label(request.conditions)

    def condition_label(self, conditions: dict[str, Any]) -> int | None:
        """The class index asked for, or None; an unknown key or class is a RequestError naming it."""
        unknown = [k for k in conditions if k not in CONDITION_KEYS]
        if unknown or len(conditions) > 1:
            raise RequestError(f"unknown condition {(unknown or list(conditions))[0]!r}: image families take one "
                               f"condition, 'class' (one of {', '.join(self.classes)})")
        if not conditions:
            return None
        value = str(next(iter(conditions.values())))
        if value not in self.classes:
            raise RequestError(f"unknown class {value!r}; the model knows: {', '.join(self.classes)}")
        return self.classes.index(value)

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        asked = [self.condition_label(conditions) for conditions in context.conditions_per_item()]
        if not _on_device(self.net, context.device):  # moving a net that is already there still costs ~0.5 ms
            self.net.to(context.device)
        pixels = self.sample(request.n, context.seed, asked).to(context.device)  # stays on the engine's device
        return [ImageOutput(p, metadata={} if a is None else {"class": self.classes[a]}) for p, a in zip(pixels, asked)]

    def sample(self, n: int, seed: int = 0, label: int | Sequence[int | None] | None = None) -> Any:
        """(n, C, H, W) float32 pixels in [0, 1] on the network's device, deterministic in `seed` (direct sampling:
        what users are handed goes through `Engine.generate`, and so through the policies). `label`: one class
        index for all, one per image (None: drawn from the training class shares), or None for all drawn."""
        import torch

        self._require_fitted()
        gen = torch.Generator().manual_seed(seed)
        asked = [label] * n if label is None or isinstance(label, int) else list(label)
        open_items = [i for i, a in enumerate(asked) if a is None]
        labels = torch.tensor([-1 if a is None else a for a in asked], dtype=torch.int64)
        if open_items:  # drawn only where no class was asked for: a class asked for leaves the noise as it was
            labels[open_items] = torch.multinomial(self.class_prior.float(), len(open_items), replacement=True, generator=gen)
        if self.net.training:  # eval() walks every module: ~0.1 ms a call on a tiny net
            self.net.eval()
        with torch.no_grad():
            return self._sample_pixels(self._onehot(labels), gen).float().clamp(0, 1)

    def _require_fitted(self) -> None:
        if self.net is None:
            raise RequestError(f"this {self.id} model has not been fitted; call fit() or load a saved model")

    # -- persistence ----------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"options": self.options.model_dump(mode="json"), "classes": self.classes, "image_shape": list(self.image_shape),
                "license": self.options.license, "data_source": self.options.data_source, "training": self.metadata}

    def save(self, path: str | Path) -> Path:
        from gensdk.reference import TrainingReference

        self._require_fitted()
        path = save_net(self, self.net, {"class_prior": self.class_prior.double().contiguous()}, path)
        TrainingReference.save_or_clear(self.reference, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeuralImageFamily:
        from gensdk.reference import TrainingReference

        path = Path(path)
        manifest = cls.read_own_manifest(path)
        try:
            model = cls(manifest.get("options"))
            model.classes = [str(c) for c in manifest["classes"]]
            c, h, w = (int(v) for v in manifest["image_shape"])
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{path / MANIFEST_NAME} is corrupted: {exc}") from None
        model.image_shape = (c, h, w)
        model.metadata = manifest.get("training", {})
        tensors = read_weights(path / WEIGHTS_NAME)
        prior = tensors.pop("class_prior", None)
        if prior is None or prior.shape != (len(model.classes),):
            raise ModelLoadError(f"weights file {path / WEIGHTS_NAME} lacks the class prior of its {len(model.classes)} classes")
        model.class_prior = prior
        model.net = load_state(model._build(), tensors, path / WEIGHTS_NAME)
        model.reference = TrainingReference.load(path)
        model.source_path = path
        model.weights_digest = weights_digest(path / WEIGHTS_NAME)
        return model


def split_holdout_images(data: ImageData, fraction: float, seed: int) -> tuple[ImageData, ImageData | None]:
    """(images to train on, held-out images or None): a seeded random `fraction`, never trained on. Fewer than
    MIN_HOLDOUT_IMAGES held out (or fewer left to train on) say too little: then every image is trained on."""
    import torch

    n_holdout = round(fraction * len(data.pixels))
    if n_holdout < MIN_HOLDOUT_IMAGES or len(data.pixels) - n_holdout < MIN_HOLDOUT_IMAGES:
        return data, None
    held = torch.zeros(len(data.pixels), dtype=torch.bool)
    held[torch.as_tensor(np.random.default_rng(seed).choice(len(data.pixels), n_holdout, replace=False))] = True
    return (ImageData(data.pixels[~held], data.labels[~held], data.classes),
            ImageData(data.pixels[held], data.labels[held], data.classes))


def _on_device(module: Any, device: str) -> bool:
    """Whether the module's parameters are on `device` ("cuda" matches any CUDA device's index)."""
    import torch

    wanted, have = torch.device(device), next(module.parameters()).device
    return have.type == wanted.type and (wanted.index is None or have.index == wanted.index)
