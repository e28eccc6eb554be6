"""Generating through the engine: the same images as calling diffusers directly, seeds, schedulers, sizes,
micro-batches, and bad requests refused with errors that name the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gensdk_diffusion.plugin
from gensdk import Verdict
from gensdk.errors import RequestError
from gensdk.testing import make_engine

STEPS = {"steps": 3}


def pixels(result: Any) -> Any:
    import torch

    return torch.stack([o.pixels for o in result.outputs])


def raw(pipeline_class: Any, path: Path, **call: Any) -> Any:
    """The same directory through diffusers alone, as a user without gensdk would run it."""
    import torch

    from gensdk_diffusion.loading import quiet_diffusers

    with quiet_diffusers():
        pipeline = pipeline_class.from_pretrained(path, use_safetensors=True, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    seed = call.pop("seed")
    with torch.inference_mode():
        return pipeline(generator=torch.Generator().manual_seed(seed), output_type="pt", **call).images


def test_unconditional_images_equal_the_raw_ddpm_pipeline(engine: Any, unet_dir: Path) -> None:
    from diffusers import DDPMPipeline

    result = engine.generate(str(unet_dir), n=3, seed=7, params=STEPS)
    expected = raw(DDPMPipeline, unet_dir, batch_size=3, num_inference_steps=3, seed=7)
    assert result.verdict is Verdict.PASS and len(result.outputs) == 3
    assert pixels(result).equal(expected)


def test_text_to_image_equals_the_raw_pipeline(engine: Any, sd_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    call = dict(prompt=["a red cat", "a blue dog"], num_images_per_prompt=2, num_inference_steps=3,
                guidance_scale=5.0, negative_prompt=["green", "green"])
    result = engine.generate(str(sd_dir), prompts=call["prompt"], n=2, seed=3,
                             params={"steps": 3, "guidance_scale": 5.0, "negative_prompt": "green"})
    expected = raw(StableDiffusionPipeline, sd_dir, seed=3, **call)
    assert pixels(result).equal(expected)
    assert [o.metadata["prompt"] for o in result.outputs] == ["a red cat", "a red cat", "a blue dog", "a blue dog"]


def test_outputs_are_float_tensors_in_unit_range_on_the_device(engine: Any, sd_dir: Path) -> None:
    result = engine.generate(str(sd_dir), prompts=["a cat"], seed=1, params={"steps": 2, "height": 24, "width": 32})
    image = result.outputs[0].pixels
    assert image.shape == (3, 24, 32) and str(image.device) == engine.device and image.dtype.is_floating_point
    assert 0 <= float(image.min()) and float(image.max()) <= 1


def test_same_seed_same_images_other_seed_other_images(engine: Any, unet_model: Any) -> None:
    first = engine.generate(unet_model, n=2, seed=5, params=STEPS)
    again = engine.generate(unet_model, n=2, seed=5, params=STEPS)
    other = engine.generate(unet_model, n=2, seed=6, params=STEPS)
    assert [o.digest() for o in first.outputs] == [o.digest() for o in again.outputs]
    assert {o.digest() for o in first.outputs}.isdisjoint(o.digest() for o in other.outputs)


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpm-solver++", "euler"])
def test_every_scheduler_samples_both_kinds(engine: Any, unet_model: Any, sd_model: Any, scheduler: str) -> None:
    params = {"scheduler": scheduler, "steps": 3}
    own = engine.generate(unet_model, n=1, seed=2, params=STEPS)
    chosen = engine.generate(unet_model, n=1, seed=2, params=params)
    text = engine.generate(sd_model, prompts=["a tree"], seed=2, params=params)
    assert chosen.verdict is Verdict.PASS and text.verdict is Verdict.PASS
    assert (chosen.outputs[0].digest() == own.outputs[0].digest()) == (scheduler == "ddpm")  # its own is DDPM
    assert type(unet_model.pipeline.scheduler).__name__ == "DDPMScheduler"  # the model's own is left in place


def test_guidance_and_negative_prompt_change_the_image(engine: Any, sd_model: Any) -> None:
    def digest(**params: Any) -> str:
        return engine.generate(sd_model, prompts=["a cat"], seed=4, params={"steps": 2, **params}).outputs[0].digest()

    assert len({digest(), digest(guidance_scale=1.0), digest(negative_prompt="a dog")}) == 3


def test_micro_batches_give_every_image(tmp_path: Path, unet_model: Any, sd_model: Any) -> None:
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin], config={"max_batch_size": 2}) as engine:
        unconditional = engine.generate(unet_model, n=5, seed=1, params=STEPS)
        text = engine.generate(sd_model, prompts=["a cat", "a dog", "a tree"], n=1, seed=1, params={"steps": 2})
        many = engine.generate(sd_model, prompts=["a cat"], n=3, seed=1, params={"steps": 2})
    assert len(unconditional.outputs) == 5 and len({o.digest() for o in unconditional.outputs}) == 5
    assert [o.metadata["prompt"] for o in text.outputs] == ["a cat", "a dog", "a tree"]
    assert len(many.outputs) == 3


@pytest.mark.parametrize(("params", "message"), [
    ({"steps": 0}, "steps: Input should be greater than or equal to 1"),
    ({"steps": 101}, "steps=101 is more than the 100 noise levels"),
    ({"guidance_scale": -1}, "guidance_scale: Input should be greater than or equal to 0"),
    ({"scheduler": "heun"}, "scheduler: Input should be 'ddpm', 'ddim', 'dpm-solver\\+\\+' or 'euler'"),
    ({"height": 0}, "height: Input should be greater than or equal to 1"),
    ({"guidance_scale": 3}, "guidance_scale needs a text-to-image model or a class-conditional"),
    ({"negative_prompt": "blurry"}, "negative_prompt needs a text-to-image model"),
    ({"sampler": "ddim"}, "sampler"),
])
def test_bad_params_for_an_unconditional_model(engine: Any, unet_model: Any, params: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        engine.generate(unet_model, n=1, seed=1, params=params)


def test_a_size_the_unet_cannot_halve_is_refused(engine: Any, unet_model: Any) -> None:
    with pytest.raises(RequestError, match=r"width=9 is not a multiple of 2 \(the unet halves the image 1 times\)"):
        engine.generate(unet_model, n=1, params={"width": 9})


@pytest.mark.parametrize(("request_fields", "message"), [
    ({"prompts": ["a cat"]}, "unconditional model \\(DDPMPipeline\\); it takes no prompt"),
    ({"conditions": {"class": "3"}}, "not class-conditional; remove 'conditions'"),
    ({"messages": [[{"role": "user", "content": "hi"}]]}, "prompts, not chat messages"),
])
def test_bad_requests_for_an_unconditional_model(engine: Any, unet_model: Any, request_fields: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        engine.generate(unet_model, n=1, **request_fields)


@pytest.mark.parametrize(("request_fields", "message"), [
    ({}, "needs at least one prompt"),
    ({"prompts": ["  "]}, "prompt 0 is empty"),
    ({"prompts": ["a cat"], "params": {"height": 20}}, "height=20 is not a multiple of 8 \\(the VAE downsamples by 2"),
    ({"prompts": ["a cat"], "params": {"negative_prompt": "x", "guidance_scale": 1}}, "negative_prompt has no effect"),
    ({"prompts": ["a cat"], "conditions": {"class": "cat"}}, "takes prompts, not conditions"),
])
def test_bad_requests_for_a_text_to_image_model(engine: Any, sd_model: Any, request_fields: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        engine.generate(sd_model, n=1, **request_fields)


def test_gensdk_generate_writes_pngs(sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from gensdk.cli import main as cli_main

    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "diffusion")
    out = tmp_path / "pngs"
    code = cli_main.run(["generate", str(sd_dir), "--prompt", "a red square", "--n", "3", "--seed", "1",
                         "--param", "steps=2", "--out", str(out), "--audit", str(tmp_path / "audit.db")])
    assert code == 0
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == ["00000.png", "00001.png", "00002.png"]
    assert Image.open(written[0]).size == (16, 16)


def test_the_engines_device_and_dtype_are_used(tmp_path: Path, unet_dir: Path) -> None:
    import torch

    from tiny_diffusion import FixedNoise, Supplies

    noise = FixedNoise()
    config = {"device": "cpu", "dtype": "bfloat16"}
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin], policies=[Supplies(noise)], config=config) as engine:
        model = engine.load_model(unet_dir)  # this engine's own copy, not the session's float32 one
        result = engine.generate(model, n=2, seed=1, params=STEPS)
    assert model.pipeline.unet.dtype == torch.bfloat16 and result.model["family"] == "diffusion"
    assert result.verdict is Verdict.PASS and result.outputs[0].pixels.dtype == torch.float32
    assert noise.calls == [((2, 3, 8, 8), "cpu", torch.bfloat16)]


def test_sampling_outside_the_engine_builds_no_autograd_graph(unet_model: Any) -> None:
    """The unet's weights require grad; without inference_mode every step would be recorded for backward."""
    assert any(p.requires_grad for p in unet_model.pipeline.unet.parameters())
    assert not unet_model.sample(1, seed=1, params=STEPS).requires_grad
