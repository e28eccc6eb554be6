"""The conformance kit on each kind of diffusion model: unconditional and text-to-image pipelines built in memory,
and a class-conditional DDPM that gensdk trained."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

import gensdk_diffusion.plugin
from gensdk.testing.conformance import FamilyConformance
from gensdk_diffusion import DiffusionFamily
from tiny_diffusion import tiny_sd_pipeline, tiny_unet_pipeline


class TestUnconditional(FamilyConformance):
    family = DiffusionFamily
    plugin = gensdk_diffusion.plugin
    request = {"n": 2, "params": {"steps": 2}}

    def make_model(self) -> DiffusionFamily:
        return DiffusionFamily(tiny_unet_pipeline())


class TestTextToImage(FamilyConformance):
    family = DiffusionFamily
    plugin = gensdk_diffusion.plugin
    request = {"n": 2, "prompts": ["a red square"], "params": {"steps": 2}}

    def make_model(self) -> DiffusionFamily:
        return DiffusionFamily(tiny_sd_pipeline(Path(tempfile.mkdtemp(prefix="gensdk-tokenizer-"))))


class TestTrainedClassConditional(FamilyConformance):
    family = DiffusionFamily
    plugin = gensdk_diffusion.plugin
    request = {"n": 2, "conditions": {"class": "4"}, "params": {"steps": 2}}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, digits_model: Any) -> DiffusionFamily:
        return digits_model
