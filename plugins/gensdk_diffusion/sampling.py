"""The samplers: diffusers' text-to-image pipeline call, and gensdk's own loop for `UNet2DModel` pipelines.

diffusers' `DDPMPipeline` / `DDIMPipeline` take neither starting noise nor a per-step callback, and cannot pass
class labels, so unconditional and class-conditional models are sampled by `denoise` below: the same steps as
`DDPMPipeline.__call__` (seeded `randn_tensor`, `scheduler.set_timesteps`, unet, `scheduler.step` with the
generator), so with the pipeline's own scheduler and no policy it gives exactly the image `DDPMPipeline` gives
for the same generator. Text-to-image runs `StableDiffusionPipeline.__call__` itself, with the policies'
starting latents as `latents=` and their step callbacks through `callback_on_step_end`.

Policy processors (gensdk.processors) are checked where they touch the sampler: starting noise and replaced
latents must have the sampler's exact shape, device and dtype and be finite; anything else, or a processor
that raises, is a GenerationError naming the processor (the engine records it and releases nothing).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

from gensdk.errors import GenerationError
from gensdk.processors import InitialNoise, StepCallback

__all__ = ["SCHEDULERS", "Sampling", "denoise", "make_scheduler", "text_to_image"]

# Request names of the schedulers -> (diffusers class, config overrides).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpm-solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
}


@dataclass(frozen=True)
class Sampling:
    """One micro-batch's resolved settings (request params over the model's defaults)."""

    steps: int
    guidance_scale: float
    height: int
    width: int
    negative_prompt: str | None = None


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler of `name` sharing the model's noise schedule (betas, timesteps, prediction type)."""
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(base_config, **overrides)


# -- policy processors ------------------------------------------------------------------------------------------


def initial_noise(source: InitialNoise | None, shape: tuple[int, ...], generator: Any, device: Any, dtype: Any) -> Any:
    """The starting noise: the policy's if one supplies it (checked), else the seeded draw diffusers makes."""
    from diffusers.utils.torch_utils import randn_tensor

    if source is None:
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    name = type(source).__name__
    try:
        noise = source.noise(shape, generator=generator, device=device, dtype=dtype)
    except Exception as exc:
        raise GenerationError(f"initial-noise processor {name} failed: {type(exc).__name__}: {exc}") from exc
    return _checked(noise, shape, device, dtype, f"initial-noise processor {name}")


def run_callbacks(callbacks: Sequence[StepCallback], step: int, timestep: Any, latents: Any) -> Any:
    """Call every step callback in policy order; each may replace the latents with a checked tensor."""
    for callback in callbacks:
        name = type(callback).__name__
        try:
            replaced = callback.on_step(step, timestep, latents)
        except Exception as exc:
            raise GenerationError(f"step callback {name} failed at step {step}: {type(exc).__name__}: {exc}") from exc
        if replaced is not None:
            latents = _checked(replaced, tuple(latents.shape), latents.device, latents.dtype,
                               f"step callback {name} (step {step})")
    return latents


def _checked(tensor: Any, shape: tuple[int, ...], device: Any, dtype: Any, what: str) -> Any:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise GenerationError(f"{what} returned a {type(tensor).__name__}, not a torch.Tensor")
    if tuple(tensor.shape) != tuple(shape):
        raise GenerationError(f"{what} returned shape {tuple(tensor.shape)}; the sampler needs {tuple(shape)}")
    if tensor.device != torch.device(device):
        raise GenerationError(f"{what} returned a tensor on {tensor.device}; the sampler runs on {device}")
    if tensor.dtype != dtype:
        raise GenerationError(f"{what} returned {tensor.dtype}; the sampler runs in {dtype}")
    if not torch.isfinite(tensor).all():
        raise GenerationError(f"{what} returned NaN or infinite values")
    return tensor


# -- unconditional and class-conditional UNet2DModel ---------------------------------------------------------------


def denoise(unet: Any, scheduler: Any, batch: int, settings: Sampling, generator: Any,
            noise: InitialNoise | None, callbacks: Sequence[StepCallback],
            labels: Any = None, null_label: int | None = None) -> Any:
    """(batch, C, H, W) float pixels in [0, 1] on the unet's device.

    `labels` (int64, one per image) condition a class-conditional unet; with `null_label` (the class the model
    learnt as "no class") and a guidance scale above 1, classifier-free guidance mixes both predictions.
    """
    import torch

    device, dtype = unet.device, unet.dtype
    shape = (batch, unet.config.in_channels, settings.height, settings.width)
    sample = initial_noise(noise, shape, generator, device, dtype) * scheduler.init_noise_sigma
    scheduler.set_timesteps(settings.steps)
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    guided = labels is not None and null_label is not None and settings.guidance_scale > 1
    if labels is not None:
        labels = labels.to(device)
        if guided:
            labels = torch.cat([labels, torch.full_like(labels, null_label)])
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(sample, t)
        if guided:
            both = unet(torch.cat([model_input, model_input]), t, class_labels=labels).sample
            conditional, unconditional = both.chunk(2)
            prediction = unconditional + settings.guidance_scale * (conditional - unconditional)
        else:
            prediction = unet(model_input, t, class_labels=labels).sample
        sample = scheduler.step(prediction, t, sample, **step_kwargs).prev_sample
        if callbacks:
            sample = run_callbacks(callbacks, i, t, sample)
    return (sample.float() / 2 + 0.5).clamp(0, 1)


# -- text-to-image --------------------------------------------------------------------------------------------------


def text_to_image(pipeline: Any, prompts: list[str], per_prompt: int, settings: Sampling, generator: Any,
                  noise: InitialNoise | None, callbacks: Sequence[StepCallback]) -> tuple[Any, list[bool] | None]:
    """(len(prompts) * per_prompt, 3, H, W) float pixels in [0, 1] on the pipeline's device, prompt-major, and
    the safety checker's NSFW flags where the pipeline has one."""
    latents = None
    if noise is not None:
        factor = pipeline.vae_scale_factor
        shape = (len(prompts) * per_prompt, pipeline.unet.config.in_channels,
                 settings.height // factor, settings.width // factor)
        latents = initial_noise(noise, shape, generator, pipeline.unet.device, pipeline.unet.dtype)
    negative = [settings.negative_prompt] * len(prompts) if settings.negative_prompt is not None else None
    result = pipeline(
        prompt=prompts, negative_prompt=negative, num_images_per_prompt=per_prompt,
        height=settings.height, width=settings.width, num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale, generator=generator, latents=latents, output_type="pt",
        callback_on_step_end=_step_end(callbacks) if callbacks else None,
    )
    return result.images.float(), result.nsfw_content_detected


def _step_end(callbacks: Sequence[StepCallback]) -> Any:
    """diffusers' callback_on_step_end signature around gensdk's StepCallback list."""

    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        return {"latents": run_callbacks(callbacks, step, timestep, tensors["latents"])}

    return on_step_end
