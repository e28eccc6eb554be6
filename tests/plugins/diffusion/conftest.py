"""Tiny diffusion pipelines built once per session from random components, in about a second, on the CPU.

* `unet_dir`: a DDPMPipeline (UNet2DModel of widths 8 and 16 on 8x8 RGB images, a 100-step DDPMScheduler).
* `sd_dir`: a Stable-Diffusion-style text-to-image pipeline: a UNet2DConditionModel, an AutoencoderKL with a
  factor of 2, a 2-layer CLIPTextModel from a CLIPTextConfig, and a CLIPTokenizer over a vocabulary written
  here (whole words and single letters, no merges).
* `digits_model`: a class-conditional DDPM that gensdk trained for two epochs on 200 digits at 8x8.

`model_copy(kind)` gives a fresh copy of a directory to damage or edit. Builders and policy doubles are in
tiny_diffusion.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gensdk_diffusion.plugin  # noqa: E402
from gensdk.testing import make_engine  # noqa: E402
from tiny_diffusion import TINY_TRAINING, digits_subset, save_pipeline, tiny_sd_pipeline, tiny_unet_pipeline  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One torch thread: on two cores shared with other jobs, two threads spin against each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def unet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pipeline(tiny_unet_pipeline(), tmp_path_factory.mktemp("pipelines") / "ddpm")


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipelines")
    return save_pipeline(tiny_sd_pipeline(root / "tokenizer-source"), root / "sd")


@pytest.fixture(scope="session")
def unet_model(unet_dir: Path) -> Any:
    from gensdk_diffusion import DiffusionFamily

    return DiffusionFamily.load(unet_dir)


@pytest.fixture(scope="session")
def sd_model(sd_dir: Path) -> Any:
    from gensdk_diffusion import DiffusionFamily

    return DiffusionFamily.load(sd_dir)


@pytest.fixture(scope="session")
def digits_model() -> Any:
    from gensdk_diffusion import DiffusionFamily

    return DiffusionFamily(train_options={**TINY_TRAINING, "class_conditional": True}).fit(digits_subset())


@pytest.fixture(scope="session")
def digits_dir(digits_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_model.save(tmp_path_factory.mktemp("trained") / "digits")


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin]) as eng:
        yield eng


@pytest.fixture
def model_copy(unet_dir: Path, sd_dir: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of the 'unet' or 'sd' pipeline directory, to damage or edit."""

    def copy(kind: str) -> Path:
        return Path(shutil.copytree({"unet": unet_dir, "sd": sd_dir}[kind], tmp_path / kind))

    return copy
