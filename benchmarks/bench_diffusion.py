"""Engine overhead on diffusion: `Engine.generate` with zero policies against calling the same diffusers
pipeline directly, same model, batch, steps and seed, interleaved in one run (target: >= 0.97x images/s).

Two pipelines with random weights (nothing is downloaded), each built once and shared by both sides:

* **unconditional**: a `DDPMPipeline` whose UNet2DModel has the shape `gensdk train diffusion` uses at 32x32
  (widths 32/64/128, attention at the coarsest level), 3 channels; direct side: `DDPMPipeline.__call__`.
  The engine samples it with gensdk's own loop (the same steps: the images are identical, see the tests).
* **text-to-image**: a small Stable-Diffusion-shaped pipeline (UNet2DConditionModel of widths 32/64 with
  cross-attention, AutoencoderKL with a factor of 4, a 4-layer CLIP text encoder of width 64) at 64x64;
  direct side: `StableDiffusionPipeline.__call__` with the same arguments.

Each repetition times three calls back to back, rotating which goes first: the pipeline called directly as a
user would (`pipeline(...)`: diffusers runs it under `torch.no_grad`), the same call under
`torch.inference_mode` (what the engine wraps generation in: a strict comparison of the engine's own cost),
and `Engine.generate`, which includes everything a user pays: request validation, the policy runner, output
digests, the SQLite audit commit. Reported: median images/s of each and the engine's ratio to both, as the
ratio of the medians and as the median of each repetition's own ratio, of wall time and of this process's CPU
time.

    .venv/bin/python benchmarks/bench_diffusion.py [--reps 15] [--batch 4] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

WORDS = "a an the red green blue black white square circle cat dog house tree of on in with".split()


def build_ddpm(size: int = 32, widths: tuple[int, ...] = (32, 64, 128), seed: int = 0) -> Any:
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    levels = len(widths)
    unet = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=widths,
                       down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
                       up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1), norm_num_groups=8)
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))


def write_vocab(folder: Path) -> tuple[str, str]:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for word in WORDS:
        vocab[f"{word}</w>"] = len(vocab)
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(f"{ch}</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return str(folder / "vocab.json"), str(folder / "merges.txt")


def build_text_to_image(folder: Path, shape: str = "small", seed: int = 0) -> Any:
    """'small': widths 32/64, a 4x VAE, text width 64 (CPU). 'sd15': Stable Diffusion 1.5's architecture
    (860M-parameter unet, 8x VAE, 12-layer text encoder of width 768), random weights (GPU)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer(*write_vocab(folder), model_max_length=77)
    torch.manual_seed(seed)
    if shape == "sd15":
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # diffusers' defaults are SD 1.x's
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        text = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)
    else:
        unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(32, 64), cross_attention_dim=64, norm_num_groups=8,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=(32, 64, 64), latent_channels=4, norm_num_groups=8, sample_size=64,
                            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
        text = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=4)
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=0,
                                           eos_token_id=1, pad_token_id=1, **text))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=encoder, tokenizer=tokenizer, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def engine_for(audit: Path, device: str = "cpu", dtype: str = "float32") -> Any:
    import gensdk_diffusion.plugin
    from gensdk import Engine

    return Engine({"device": device, "dtype": dtype}, plugins=[gensdk_diffusion.plugin], load_entrypoints=False,
                  audit=str(audit))


def sides(pipeline: Any, engine: Any, batch: int, steps: int, seed: int, device: str, prompt: str | None) -> dict[str, Callable[[], Any]]:
    """The direct call and the engine call: same pipeline object, batch, steps and seed."""
    import torch

    from gensdk_diffusion import DiffusionFamily

    model = DiffusionFamily(pipeline)
    pipeline.set_progress_bar_config(disable=True)

    def direct() -> Any:
        generator = torch.Generator(device=device).manual_seed(seed)
        if prompt is None:
            return pipeline(batch_size=batch, num_inference_steps=steps, generator=generator, output_type="pt").images
        return pipeline(prompt=[prompt], num_images_per_prompt=batch, num_inference_steps=steps, generator=generator,
                        output_type="pt").images

    def direct_inference_mode() -> Any:
        with torch.inference_mode():  # what the engine wraps generation in; diffusers' own __call__ uses no_grad
            return direct()

    def through_engine() -> Any:
        request = {"n": batch, "seed": seed, "params": {"steps": steps}}
        if prompt is not None:
            request["prompts"] = [prompt]
        result = engine.generate(model, request)
        assert len(result.outputs) == batch, result.verdict
        return result

    return {"direct": direct, "direct_inference_mode": direct_inference_mode, "engine": through_engine}


def measure(calls: dict[str, Callable[[], Any]], reps: int, batch: int, sync: Callable[[], None] = lambda: None) -> dict[str, Any]:
    for call in calls.values():  # warm-up: first-use placement, allocator, kernels
        call()
    sync()
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}  # this process's CPU seconds: steadier when shared
    names = list(calls)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate who goes first
            started, cpu_started = time.perf_counter(), time.process_time()
            calls[name]()
            sync()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    rate = {name: batch / statistics.median(t) for name, t in times.items()}
    return {"images_per_s": {k: round(v, 3) for k, v in rate.items()},
            "median_s": {k: round(statistics.median(t), 4) for k, t in times.items()},
            "ratio_engine_to_direct": round(rate["engine"] / rate["direct"], 4),
            "ratio_engine_to_direct_inference_mode": round(rate["engine"] / rate["direct_inference_mode"], 4),
            # each repetition's own ratio (its calls seconds apart), median over repetitions: steadier than the
            # ratio of medians when the machine's load drifts during the run
            "paired_ratio_engine_to_direct": _paired(times["direct"], times["engine"]),
            "paired_ratio_engine_to_direct_inference_mode": _paired(times["direct_inference_mode"], times["engine"]),
            "paired_cpu_ratio_engine_to_direct": _paired(cpu["direct"], cpu["engine"]),
            "paired_cpu_ratio_engine_to_direct_inference_mode": _paired(cpu["direct_inference_mode"], cpu["engine"])}


def _paired(reference: list[float], engine: list[float]) -> float:
    """Median over repetitions of (reference seconds / engine seconds): the engine's images/s ratio."""
    return round(statistics.median(r / e for r, e in zip(reference, engine)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"batch": args.batch, "steps": args.steps, "reps": args.reps, "threads": args.threads,
                              "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp, engine_for(Path(tmp) / "audit.db") as engine:
        cases = {"unconditional (DDPMPipeline, 32x32)": (build_ddpm(), None),
                 "text-to-image (StableDiffusionPipeline, 64x64)": (build_text_to_image(Path(tmp)), "a red cat on a house")}
        for name, (pipeline, prompt) in cases.items():
            calls = sides(pipeline, engine, args.batch, args.steps, args.seed, "cpu", prompt)
            report[name] = measure(calls, args.reps, args.batch)
            print(name, json.dumps(report[name]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
