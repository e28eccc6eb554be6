"""Training a small DDPM on small images: scikit-learn's digits, a folder of images, or arrays.

The network is diffusers' `UNet2DModel`: a few resolution levels (16, 32, 64 channels by default), one ResNet
block per level and self-attention only at the coarsest one, where it is cheap. Training is the standard
denoising objective on a cosine noise schedule (`squaredcos_cap_v2`, which suits images this small better than
the linear one) with two additions that matter on a CPU budget of minutes:

* min-SNR-gamma loss weighting (Hang et al., 2023): the nearly-clean noise levels stop dominating the
  gradient, and the model learns the shape of a digit in far fewer steps;
* an exponential moving average of the weights (diffusers' `EMAModel`), which is what gets saved: single
  Adam iterates this early in training give noisy samples.

A class-conditional model learns one extra "null" class (labels dropped 10% of the time), so the same network
also samples with classifier-free guidance (`guidance_scale` above 1; the default is 1, plain conditional
sampling, which measured best on digits). The result is a standard `DDPMPipeline` (unet +
`DDPMScheduler`); `gensdk_model.json` beside it records the classes, their shares in the training data, the
training figures and the sampling defaults (DDIM, 50 steps) the model is meant to be used with.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gensdk._canonical import sha256_hex
from gensdk.errors import DataError
from gensdk.family import Progress
from gensdk.request import validate_options

__all__ = ["TrainOptions", "build_unet", "prepare_images", "train"]

log = logging.getLogger("gensdk.diffusion")

WARMUP_STEPS = 50  # linear learning-rate warm-up: Adam's first steps on a fresh unet are the unstable ones
NULL_LABEL_RATE = 0.1  # share of training labels replaced by the null class (classifier-free guidance)
NORM_GROUPS = 8  # GroupNorm groups in every block: channel widths must be multiples of it


class TrainOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    size: int | None = Field(16, ge=8, le=512)  # side of the square training images; None keeps theirs
    class_conditional: bool = False
    epochs: int = Field(200, ge=1, le=100_000)
    time_budget_s: float | None = Field(None, gt=0)
    patience: int | None = Field(None, ge=1)  # epochs without a lower epoch loss before stopping
    batch_size: int = Field(64, ge=2, le=65_536)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=2, max_length=5)
    train_timesteps: int = Field(1000, ge=10, le=10_000)
    prediction: Literal["epsilon", "v_prediction"] = "v_prediction"
    snr_gamma: float | None = Field(5.0, gt=0)  # min-SNR-gamma loss weighting; None: plain MSE
    ema_decay: float = Field(0.995, ge=0, lt=1)
    sample_steps: int = Field(50, ge=1, le=10_000)  # sampling defaults written to the manifest
    # Class-conditional models' default guidance. 1 (none) measured best on digits: after 580 steps a classifier
    # of real digits labels 91% as the class asked for at 1, 81% at 2 (benchmarks/bench_diffusion_digits.py).
    guidance_scale: float = Field(1.0, ge=0, le=100)
    # Share of the images kept out of training as the memorisation reference's fresh images (at least 50, else
    # none are held out and no reference is kept), as the GAN and VAE image families do. 0 trains on every
    # image and keeps no reference: the memorisation policy then refuses the model.
    holdout_fraction: float = Field(0.05, ge=0, lt=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    license: str | None = None
    data_source: str | None = None

    @field_validator("widths")
    @classmethod
    def _groupable(cls, widths: list[int]) -> list[int]:
        if any(w < NORM_GROUPS or w % NORM_GROUPS for w in widths):
            raise ValueError(f"every width must be a positive multiple of {NORM_GROUPS} (GroupNorm groups)")
        return widths

    @classmethod
    def parse(cls, value: Any) -> TrainOptions:
        return validate_options(cls, value, "diffusion training options")


def prepare_images(pixels: Any, size: int | None, levels: int) -> Any:
    """(N, C, size, size) in [-1, 1], the range DDPM schedulers assume. Upscaling is bilinear (8x8 digits
    become smooth strokes, not blocks); downscaling is antialiased."""
    import torch.nn.functional as F

    _, _, h, w = pixels.shape
    if size is not None and (h, w) != (size, size):
        if h != w:
            raise DataError(f"images are {w}x{h}; --size makes square images, so crop them square first "
                            "(or leave --size out to keep their size)")
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=size < h)
    side = pixels.shape[-1]
    multiple = 2 ** (levels - 1)
    if pixels.shape[-2] % multiple or side % multiple:
        raise DataError(f"images are {side}x{pixels.shape[-2]}; a unet of {levels} levels needs sides that are "
                        f"multiples of {multiple}")
    return pixels.clamp(0, 1) * 2 - 1


def build_unet(size: tuple[int, int], channels: int, widths: list[int], classes: int | None) -> Any:
    from diffusers import UNet2DModel

    levels = len(widths)
    return UNet2DModel(
        sample_size=size[0] if size[0] == size[1] else size,  # an int for square images, as diffusers writes it
        in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=tuple(widths), norm_num_groups=NORM_GROUPS,
        down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        num_class_embeds=None if classes is None else classes + 1,  # + the null class
    )


def train(data: Any, options: TrainOptions, progress: Progress | None = None) -> tuple[Any, dict[str, Any], Any]:
    """Train on `data` ('digits', an image folder, ImageData or (pixels, labels)); return the DDPMPipeline, the
    metadata for gensdk_model.json and the memorisation reference (an ImageReference of the images as the
    network saw them, resized, against a held-out share; None when too few images to hold any out)."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler

    from gensdk.device import resolve_device
    from gensdk.images import as_image_data, split_holdout_images
    from gensdk.reference import ImageReference

    data = as_image_data(data)
    if len(data.pixels) < 2:
        raise DataError(f"{len(data.pixels)} image is too few to train a diffusion model (at least 2)")
    data, holdout = split_holdout_images(data, options.holdout_fraction, options.seed)
    images = prepare_images(data.pixels, options.size, len(options.widths))
    reference = None
    if holdout is not None:  # compared in [0, 1] at the generated size: what the model's outputs will be
        held = prepare_images(holdout.pixels, options.size, len(options.widths))
        reference = ImageReference.build_images((images + 1) / 2, (held + 1) / 2)
    classes = list(data.classes) if options.class_conditional else None
    device = resolve_device(options.device)
    scheduler = DDPMScheduler(num_train_timesteps=options.train_timesteps, beta_schedule="squaredcos_cap_v2",
                              prediction_type=options.prediction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        unet = build_unet(tuple(images.shape[-2:]), images.shape[1], options.widths,
                          None if classes is None else len(classes))
    unet.to(device)
    figures = _Trainer(unet, scheduler, options, device).run(images, data.labels, classes is not None, progress)
    unet.to("cpu").eval()
    pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
    metadata = _metadata(data, images, options, figures)
    metadata["training"]["holdout_images"] = 0 if holdout is None else len(holdout.pixels)
    return pipeline, metadata, reference


class _Trainer:
    """The optimisation loop: shuffled epochs, warm-up, min-SNR weighting, EMA, early stop and time budget."""

    def __init__(self, unet: Any, scheduler: Any, options: TrainOptions, device: str):
        import torch
        from diffusers.training_utils import EMAModel

        self.unet, self.scheduler, self.options, self.device = unet, scheduler, options, device
        self.optimizer = torch.optim.AdamW(unet.parameters(), lr=options.learning_rate, weight_decay=0.0)
        self.ema = EMAModel(unet.parameters(), decay=options.ema_decay)
        self.generator = torch.Generator().manual_seed(options.seed)
        self.steps = 0
        self.deadline: float | None = None

    def run(self, images: Any, labels: Any, conditional: bool, progress: Progress | None) -> dict[str, Any]:
        opts = self.options
        started, cpu_started = time.perf_counter(), time.process_time()
        best, best_epoch, best_ema, stopped = np.inf, 0, None, "epochs"
        self.deadline = started + opts.time_budget_s if opts.time_budget_s else None
        history = []
        for epoch in range(1, opts.epochs + 1):
            loss = self._epoch(images, labels, conditional)
            history.append(loss)
            if loss < best:
                best, best_epoch = loss, epoch
                best_ema = copy.deepcopy(self.ema.shadow_params) if opts.patience else None
            if progress:
                progress(epoch, opts.epochs, f"loss {loss:.4f}, {self.steps} steps")
            if opts.patience and epoch - best_epoch >= opts.patience:
                stopped = "early stopping"
                break
            if self._out_of_time():
                stopped = "time budget"
                break
        if best_ema is not None:
            self.ema.shadow_params = best_ema
        self.ema.copy_to(self.unet.parameters())  # what is saved: the averaged weights
        seconds = time.perf_counter() - started
        return {"epochs_run": epoch, "best_epoch": best_epoch, "steps": self.steps, "stopped": stopped,
                "seconds": round(seconds, 2), "seconds_per_epoch": round(seconds / epoch, 3),
                # CPU seconds of all this process's threads (threads spinning on a crowded CPU count too)
                "cpu_seconds": round(time.process_time() - cpu_started, 2),
                "final_loss": round(history[-1], 5), "best_loss": round(float(best), 5),
                "loss_history": [round(v, 5) for v in history]}

    def _epoch(self, images: Any, labels: Any, conditional: bool) -> float:
        import torch

        order = torch.randperm(len(images), generator=self.generator)
        total, count = 0.0, 0
        self.unet.train()
        for start in range(0, len(images), self.options.batch_size):
            index = order[start : start + self.options.batch_size]
            class_labels = self._dropped(labels[index]) if conditional else None
            loss = self._step(images[index], class_labels)
            total, count = total + loss * len(index), count + len(index)
            if self._out_of_time():  # checked per step: an epoch can take minutes on a busy CPU
                break
        return total / count

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def _dropped(self, labels: Any) -> Any:
        """Labels with NULL_LABEL_RATE of them replaced by the null class (index = number of classes)."""
        import torch

        null = self.unet.config.num_class_embeds - 1
        drop = torch.rand(len(labels), generator=self.generator) < NULL_LABEL_RATE
        return torch.where(drop, torch.full_like(labels, null), labels)

    def _step(self, clean: Any, class_labels: Any) -> float:
        import torch

        noise = torch.randn(clean.shape, generator=self.generator)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(clean),), generator=self.generator)
        noisy = self.scheduler.add_noise(clean, noise, timesteps)
        target = noise if self.options.prediction == "epsilon" else self.scheduler.get_velocity(clean, noise, timesteps)
        self._warm_up()
        move = {"device": self.device}
        predicted = self.unet(noisy.to(**move), timesteps.to(**move),
                              class_labels=None if class_labels is None else class_labels.to(**move)).sample
        per_image = (predicted - target.to(**move)).pow(2).mean(dim=(1, 2, 3))
        loss = (per_image * self._weights(timesteps).to(**move)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.ema.step(self.unet.parameters())
        self.steps += 1
        return float(per_image.detach().mean())

    def _weights(self, timesteps: Any) -> Any:
        """min-SNR-gamma: min(SNR, gamma) / SNR for epsilon targets, / (SNR + 1) for v targets."""
        import torch
        from diffusers.training_utils import compute_snr

        if self.options.snr_gamma is None:
            return torch.ones(len(timesteps))
        snr = compute_snr(self.scheduler, timesteps)
        capped = snr.clamp(max=self.options.snr_gamma)
        return capped / (snr + 1 if self.options.prediction == "v_prediction" else snr)

    def _warm_up(self) -> None:
        scale = min(1.0, (self.steps + 1) / WARMUP_STEPS)
        for group in self.optimizer.param_groups:
            group["lr"] = self.options.learning_rate * scale


def _metadata(data: Any, images: Any, options: TrainOptions, figures: dict[str, Any]) -> dict[str, Any]:
    import torch

    counts = torch.bincount(data.labels, minlength=len(data.classes)).double()
    shares = {c: round(float(s), 4) for c, s in zip(data.classes, counts / counts.sum())}
    sampling: dict[str, Any] = {"scheduler": "ddim", "steps": options.sample_steps}
    metadata: dict[str, Any] = {"license": options.license, "data_source": options.data_source,
                                "class_shares": shares, "sampling": sampling}
    if options.class_conditional:
        metadata.update(classes=list(data.classes), null_class=len(data.classes))
        sampling["guidance_scale"] = options.guidance_scale
    metadata["training"] = {
        "images": len(images), "image_shape": list(images.shape[1:]), "training_classes": list(data.classes),
        "data_sha256": sha256_hex(data.pixels.contiguous().numpy().tobytes()),
        "license": options.license, "data_source": options.data_source,
        "options": options.model_dump(mode="json"), **figures,
    }
    return metadata
