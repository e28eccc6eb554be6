"""Policies in the sampler: starting noise (InitialNoise) and per-step callbacks (StepCallback), applied in both
samplers, checked, and fail closed when they misbehave."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gensdk_diffusion.plugin
from gensdk import Verdict
from gensdk.errors import GenerationError, RequestError
from gensdk.testing import make_engine
from tiny_diffusion import FixedNoise, Recorder, Supplies

STEPS = {"steps": 4}


def run(tmp_path: Path, model: Any, *processors: Any, **request: Any) -> Any:
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin], policies=[Supplies(*processors)]) as engine:
        return engine.generate(model, **request)


def last_record(tmp_path: Path) -> dict:
    from gensdk.audit import open_audit_sink

    with open_audit_sink(str(tmp_path / "audit.db")) as sink:
        return list(sink.records())[-1]["body"]


def test_fixed_latents_give_the_raw_pipelines_image(tmp_path: Path, sd_dir: Path, sd_model: Any) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    latents = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(99))
    result = run(tmp_path, sd_model, FixedNoise(tensor=latents), prompts=["a red cat"], n=2, seed=5, params=STEPS)
    pipeline = StableDiffusionPipeline.from_pretrained(sd_dir, use_safetensors=True, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        expected = pipeline(["a red cat"], num_images_per_prompt=2, num_inference_steps=4, latents=latents,
                            generator=torch.Generator().manual_seed(5), output_type="pt").images
    assert result.verdict is Verdict.PASS
    assert torch.stack([o.pixels for o in result.outputs]).equal(expected)


def test_noise_drawn_as_diffusers_draws_it_gives_the_default_image(tmp_path: Path, unet_model: Any) -> None:
    """A policy handing back exactly the seeded draw changes nothing; any other noise changes the images."""

    class SameDraw(FixedNoise):
        def noise(self, shape: tuple[int, ...], *, generator: Any, device: Any, dtype: Any) -> Any:
            from diffusers.utils.torch_utils import randn_tensor

            return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    plain = run(tmp_path, unet_model, n=2, seed=8, params=STEPS)
    same = run(tmp_path, unet_model, SameDraw(), n=2, seed=8, params=STEPS)
    other = run(tmp_path, unet_model, FixedNoise(seed=1), n=2, seed=8, params=STEPS)
    digests = lambda result: [o.digest() for o in result.outputs]  # noqa: E731
    assert digests(same) == digests(plain) and digests(other) != digests(plain)


def test_the_noise_policy_sees_the_shape_device_and_dtype(tmp_path: Path, sd_model: Any, unet_model: Any) -> None:
    latent, pixel = FixedNoise(), FixedNoise()
    run(tmp_path, sd_model, latent, prompts=["a", "b"], n=3, seed=1, params={"steps": 2, "height": 32, "width": 16})
    run(tmp_path, unet_model, pixel, n=5, seed=1, params={"steps": 2})
    assert latent.shapes == [(6, 4, 16, 8)] and pixel.shapes == [(5, 3, 8, 8)]


@pytest.mark.parametrize(("bad", "message"), [
    (lambda shape: __import__("torch").zeros(shape[0], 1, 8, 8), r"returned shape \(2, 1, 8, 8\); the sampler needs \(2, 3, 8, 8\)"),
    (lambda shape: __import__("torch").zeros(shape, dtype=__import__("torch").float64), "returned torch.float64; the sampler runs in torch.float32"),
    (lambda shape: __import__("torch").zeros(shape, device="meta"), "returned a tensor on meta; the sampler runs on cpu"),
    (lambda shape: __import__("torch").full(shape, float("nan")), "returned NaN or infinite values"),
    (lambda shape: [[0.0]], "returned a list, not a torch.Tensor"),
])
def test_bad_noise_is_a_generation_error_naming_the_processor(tmp_path: Path, unet_model: Any, bad: Any, message: str) -> None:
    class BadNoise(FixedNoise):
        def noise(self, shape: tuple[int, ...], **kwargs: Any) -> Any:
            return bad(shape)

    with pytest.raises(GenerationError, match=f"initial-noise processor BadNoise {message}"):
        run(tmp_path, unet_model, BadNoise(), n=2, seed=1, params=STEPS)
    record = last_record(tmp_path)
    assert record["verdict"] == "block" and record["released"] == 0 and "BadNoise" in record["error"]


def test_two_noise_policies_are_refused(tmp_path: Path, unet_model: Any) -> None:
    with pytest.raises(RequestError, match="two policies supply the initial noise"):
        run(tmp_path, unet_model, FixedNoise(), FixedNoise(), n=1, seed=1, params=STEPS)


@pytest.mark.parametrize("scheduler", [None, "dpm-solver++", "euler"])
def test_a_step_callback_sees_every_step_of_both_samplers(tmp_path: Path, unet_model: Any, sd_model: Any,
                                                         scheduler: str | None) -> None:
    params = {"steps": 5, "scheduler": scheduler} if scheduler else {"steps": 5}
    pixel, latent = Recorder(), Recorder()
    run(tmp_path, unet_model, pixel, n=2, seed=1, params=params)
    run(tmp_path, sd_model, latent, prompts=["a cat"], seed=1, params=params)
    assert pixel.steps == latent.steps == [0, 1, 2, 3, 4]
    assert pixel.timesteps == sorted(pixel.timesteps, reverse=True)  # from noisy to clean


def test_a_step_callback_can_steer_the_sampler(tmp_path: Path, unet_model: Any, sd_model: Any) -> None:
    plain = run(tmp_path, unet_model, Recorder(), n=1, seed=3, params=STEPS)
    steered = run(tmp_path, unet_model, Recorder(replace=lambda x: x * 0 - 1), n=1, seed=3, params=STEPS)
    text = run(tmp_path, sd_model, Recorder(replace=lambda x: x * 0), prompts=["a cat"], seed=3, params=STEPS)
    assert steered.outputs[0].digest() != plain.outputs[0].digest()
    assert float(steered.outputs[0].pixels.max()) == 0.0  # every pixel forced to -1 -> black
    assert text.verdict is Verdict.PASS


def test_a_raising_step_callback_blocks_and_is_recorded(tmp_path: Path, sd_model: Any) -> None:
    with pytest.raises(GenerationError, match="step callback Recorder failed at step 2: RuntimeError: policy refused step 2"):
        run(tmp_path, sd_model, Recorder(raise_at=2), prompts=["a cat"], n=2, seed=1, params=STEPS)
    record = last_record(tmp_path)
    assert record["verdict"] == "block" and record["released"] == 0 and record["outputs"] == []
    assert "policy refused step 2" in record["error"]


def test_a_callback_returning_a_bad_tensor_is_named(tmp_path: Path, unet_model: Any) -> None:
    with pytest.raises(GenerationError, match=r"step callback Recorder \(step 0\) returned shape \(1, 3, 4, 4\)"):
        run(tmp_path, unet_model, Recorder(replace=lambda x: x[:, :, :4, :4]), n=1, seed=1, params=STEPS)


def test_processors_reach_every_micro_batch(tmp_path: Path, unet_model: Any) -> None:
    recorder, noise = Recorder(), FixedNoise()
    config = {"max_batch_size": 2}
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin], policies=[Supplies(recorder, noise)], config=config) as engine:
        result = engine.generate(unet_model, n=5, seed=1, params={"steps": 2})
    assert result.verdict is Verdict.PASS and len(result.outputs) == 5
    assert noise.shapes == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)] and recorder.steps == [0, 1] * 3
