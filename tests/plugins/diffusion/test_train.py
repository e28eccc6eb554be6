"""Training small DDPMs end to end: a standard diffusers directory that plain diffusers loads, the gensdk
manifest beside it, class-conditional generation, stopping rules, the CLI, and bad training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import gensdk_diffusion.plugin
from gensdk.errors import ConfigError, DataError, RequestError
from gensdk.family import MANIFEST_NAME
from gensdk.testing import make_engine
from gensdk_diffusion import DiffusionFamily
from tiny_diffusion import TINY_TRAINING, digits_subset


@pytest.fixture(scope="module")
def unconditional_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = DiffusionFamily(train_options={**TINY_TRAINING, "epochs": 1}).fit(digits_subset(100))
    return model.save(tmp_path_factory.mktemp("trained") / "unconditional")


def test_the_saved_directory_is_a_plain_ddpm_pipeline(unconditional_dir: Path) -> None:
    """diffusers alone loads it and, with the same scheduler, steps and generator, draws the same images."""
    import torch
    from diffusers import DDPMPipeline

    pipeline = DDPMPipeline.from_pretrained(unconditional_dir, use_safetensors=True, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        expected = pipeline(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(4),
                            output_type="pt").images
    assert sorted(p.name for p in unconditional_dir.iterdir()) == [MANIFEST_NAME, "model_index.json", "scheduler", "unet"]
    assert not list(unconditional_dir.rglob("*.bin"))
    with make_engine(unconditional_dir.parent, plugins=[gensdk_diffusion.plugin]) as engine:
        result = engine.generate(str(unconditional_dir), n=2, seed=4, params={"scheduler": "ddpm", "steps": 3})
    assert torch.stack([o.pixels for o in result.outputs]).equal(expected)
    assert expected.shape == (2, 1, 8, 8)


def test_the_manifest_records_licence_source_classes_and_figures(digits_dir: Path) -> None:
    manifest = json.loads((digits_dir / MANIFEST_NAME).read_text())
    assert manifest["family"] == "diffusion" and manifest["pipeline"] == "DDPMPipeline"
    assert manifest["license"] == "BSD-3-Clause" and manifest["data_source"] == "200 scikit-learn digits"
    assert manifest["classes"] == [str(d) for d in range(10)] and manifest["null_class"] == 10
    assert abs(sum(manifest["class_shares"].values()) - 1) < 1e-3
    training = manifest["training"]
    assert training["images"] == 200 and training["image_shape"] == [1, 8, 8]
    assert training["epochs_run"] == 2 and training["steps"] == 8 and len(training["loss_history"]) == 2
    assert len(training["data_sha256"]) == 64
    assert manifest["sampling"] == {"scheduler": "ddim", "steps": 50, "guidance_scale": 1.0}


def test_class_conditional_generation_through_the_engine(digits_dir: Path, tmp_path: Path) -> None:
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin]) as engine:
        model = engine.load_model(digits_dir)
        threes = engine.generate(model, n=3, seed=1, conditions={"class": "3"}, params={"steps": 3})
        guided = engine.generate(model, n=3, seed=1, conditions={"class": 3}, params={"steps": 3, "guidance_scale": 3})
        mixed = engine.generate(model, n=6, seed=1, params={"steps": 3})
    assert model.kind == "class-conditional" and threes.model["license"] == "BSD-3-Clause"
    assert [o.metadata["class"] for o in threes.outputs] == ["3", "3", "3"]
    assert [o.digest() for o in guided.outputs] != [o.digest() for o in threes.outputs]
    assert all(o.metadata["class"] in model.classes for o in mixed.outputs)
    assert threes.outputs[0].pixels.shape == (1, 8, 8)


@pytest.mark.parametrize(("conditions", "message"), [
    ({"class": "10"}, "unknown class '10'; the model knows: 0, 1, 2"),
    ({"colour": "red"}, "unknown condition 'colour'"),
])
def test_bad_conditions_are_named(digits_model: Any, engine: Any, conditions: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        engine.generate(digits_model, n=1, conditions=conditions)


def test_a_time_budget_stops_training(tmp_path: Path) -> None:
    model = DiffusionFamily(train_options={**TINY_TRAINING, "epochs": 50, "time_budget_s": 0.01})
    model.fit(digits_subset(200))  # 4 steps per epoch: the budget is checked after every step
    training = model.metadata["training"]
    assert training["stopped"] == "time budget" and training["epochs_run"] == 1 and training["steps"] == 1


def test_patience_stops_training_when_the_loss_stops_falling(tmp_path: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    options = {**TINY_TRAINING, "epochs": 30, "patience": 1, "learning_rate": 1e-9}  # a learning rate that learns nothing
    model = DiffusionFamily(train_options=options).fit(digits_subset(50), progress=lambda *a: seen.append(a))
    training = model.metadata["training"]
    assert training["stopped"] == "early stopping" and training["epochs_run"] < 30
    assert training["epochs_run"] == training["best_epoch"] + 1 == len(seen)
    assert seen[0][1] == 30 and seen[0][2].startswith("loss ")


def test_training_on_an_image_folder_learns_its_classes(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("circles", "squares"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "images" / name / f"{i}.png")
    model = DiffusionFamily(train_options={**TINY_TRAINING, "epochs": 1, "class_conditional": True})
    model.fit(str(tmp_path / "images"))
    assert model.classes == ["circles", "squares"]
    assert model.sample(2, seed=1, conditions={"class": "squares"}, params={"steps": 2}).shape == (2, 3, 8, 8)


@pytest.mark.parametrize(("options", "data", "error", "message"), [
    ({}, "rectangles", DataError, "images are 12x8; --size makes square images"),
    ({"size": None, "widths": [8, 16, 32, 64]}, "rectangles", DataError, "multiples of 8"),
    ({"widths": [8, 12]}, "digits", ConfigError, "widths: Value error, every width must be a positive multiple of 8"),
    ({}, "one", DataError, "1 image is too few"),
])
def test_bad_training_input_is_named(tmp_path: Path, options: dict, data: str, error: type, message: str) -> None:
    import torch

    inputs = {"rectangles": (torch.rand(4, 1, 8, 12), [0, 1, 0, 1]), "one": (torch.rand(1, 1, 8, 8), [0]),
              "digits": "digits"}
    with pytest.raises(error, match=message):
        DiffusionFamily(train_options={**TINY_TRAINING, **options}).fit(inputs[data])


def test_gensdk_train_diffusion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from gensdk.cli import main as cli_main

    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "diffusion")
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "digits-ddpm"
    code = cli_main.run(["train", "diffusion", "--images", "digits", "--out", str(out), "--class-conditional",
                         "--epochs", "1", "--size", "8", "--widths", "8,16", "--batch-size", "600"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "class-conditional DDPM on 1707 images of 8x8, 1 epochs / 3 steps" in printed  # 90 of 1,797 held out
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["license"].startswith("BSD-3-Clause") and "load_digits" in manifest["data_source"]
    code = cli_main.run(["generate", str(out), "--n", "2", "--condition", "class=7", "--param", "steps=2",
                         "--out", str(tmp_path / "sevens"), "--audit", str(tmp_path / "audit.db")])
    assert code == 0 and len(list((tmp_path / "sevens").glob("*.png"))) == 2
