"""Tiny diffusion pipelines and policy doubles for the diffusion tests, built from random components on the
CPU: nothing is downloaded. The fixtures that use them are in conftest.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from gensdk import Policy, PolicyOptions, hookimpl
from gensdk.processors import InitialNoise, StepCallback

WORDS = "a an the red green blue black white square circle cat dog house tree of on in with".split()
TINY_TRAINING = dict(size=8, widths=[8, 16], epochs=2, batch_size=50, train_timesteps=100, seed=0,
                     license="BSD-3-Clause", data_source="200 scikit-learn digits")


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A CLIP BPE vocabulary of whole words and single characters (every word is also reachable letter by letter)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for word in WORDS:
        vocab[f"{word}</w>"] = len(vocab)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(f"{ch}</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def tiny_unet_pipeline(channels: int = 3, class_embeds: int | None = None) -> Any:
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4, num_class_embeds=class_embeds,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100))


def tiny_sd_pipeline(tokenizer_dir: Path, text_width: int = 16) -> Any:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = write_tokenizer_files(tokenizer_dir)
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=16)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=16)
    encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=2, max_position_embeddings=16, projection_dim=16, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=encoder, tokenizer=tokenizer, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_pipeline(pipeline: Any, path: Path, **kwargs: Any) -> Path:
    from gensdk_diffusion.loading import quiet_diffusers

    with quiet_diffusers():
        pipeline.save_pretrained(path, **kwargs)
    return path


def digits_subset(n: int = 200) -> Any:
    from gensdk.images import ImageData, load_digits

    data = load_digits()
    return ImageData(data.pixels[:n], data.labels[:n], data.classes)


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


# -- policies that hand the family processors ---------------------------------------------------------------------


class FixedNoise(InitialNoise):
    """Starting noise from a seed of its own (or a tensor given as is): what a latent watermark would do."""

    def __init__(self, seed: int = 123, tensor: Any = None):
        self.seed, self.tensor = seed, tensor
        self.shapes: list[tuple[int, ...]] = []
        self.calls: list[tuple[tuple[int, ...], str, Any]] = []

    def noise(self, shape: tuple[int, ...], *, generator: Any, device: Any, dtype: Any) -> Any:
        import torch

        self.shapes.append(shape)
        self.calls.append((shape, str(device), dtype))
        if self.tensor is not None:
            return self.tensor
        own = torch.Generator().manual_seed(self.seed)
        return torch.randn(shape, generator=own).to(device=device, dtype=dtype)


class Recorder(StepCallback):
    """Records every step; optionally replaces the latents (steering) or raises at one step."""

    def __init__(self, replace: Callable[[Any], Any] | None = None, raise_at: int | None = None):
        self.steps: list[int] = []
        self.timesteps: list[float] = []
        self.replace, self.raise_at = replace, raise_at

    def on_step(self, step: int, timestep: Any, latents: Any) -> Any:
        if step == self.raise_at:
            raise RuntimeError(f"policy refused step {step}")
        self.steps.append(step)
        self.timesteps.append(float(timestep))
        return self.replace(latents) if self.replace else None


class Supplies(Policy):
    """Hands the family the processors it was built with, in every micro-batch."""

    id = "supplies"
    version = "1"
    modalities = frozenset({"image"})

    class Options(PolicyOptions):
        pass

    def __init__(self, *processors: Any, policy_id: str | None = None):
        super().__init__()
        self.processors = list(processors)
        if policy_id:
            self.id = policy_id  # type: ignore[misc]

    @hookimpl
    def prepare_generation(self, request: Any, context: Any) -> list[Any]:
        return list(self.processors)
