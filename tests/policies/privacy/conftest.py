"""Fixtures of the privacy tests. Until the `privacy` entry point is in pyproject.toml (and the project is
reinstalled), gensdk_privacy is imported from the source tree; tests always pass the plugin explicitly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[3] / "policies"
if importlib.util.find_spec("gensdk_privacy") is None:
    sys.path.insert(0, str(POLICIES))


@pytest.fixture(scope="session")
def gmm_model(adult_sample):
    """A small GMM on 2,000 Adult rows (200 held out), fitted once per session."""
    from gensdk_gmm.model import GMMFamily

    return GMMFamily({"n_components": 2, "max_iter": 10, "seed": 0}).fit(adult_sample)


@pytest.fixture(scope="session")
def adult_reference(adult_sample):
    """A training reference over 1,800 Adult rows with 200 held out, without any model."""
    from gensdk.reference import TrainingReference
    from gensdk.tabular import TableSchema

    return TrainingReference.build(TableSchema.infer(adult_sample), adult_sample.iloc[200:], adult_sample.iloc[:200])


@pytest.fixture
def copy_family(adult_sample, adult_reference):
    """A table 'generator' that returns training rows (plus optional noise): a memorising model."""
    return make_copy_family(adult_sample.iloc[200:].reset_index(drop=True), adult_reference)


def make_copy_family(training, reference, noise=0.0, copy_share=1.0, fallback=None):
    """Rows drawn from `training` (with `noise` x column deviation of Gaussian noise on numbers); with
    copy_share < 1 the other rows come from `fallback` (a real model). Only the first call copies; later
    calls (replacement rounds) use `fallback` when there is one."""
    import numpy as np
    import pandas as pd

    from gensdk.outputs import TableOutput
    from gensdk.testing import InMemoryFamily

    class CopyFamily(InMemoryFamily):
        id = "copy"
        modality = "table"
        default_batch_size = 100_000  # one table per request, like the GMM

        def __init__(self):
            super().__init__(reference)
            self.calls = 0

        def _generate(self, request, params, context):
            self.calls += 1
            rng = np.random.default_rng(context.seed)
            copies = request.n if (fallback is None or self.calls == 1) else 0
            copies = int(round(copies * copy_share)) if fallback is not None else copies
            frame = training.iloc[rng.integers(0, len(training), copies)].reset_index(drop=True)
            numeric = [c.name for c in reference.schema.columns if c.numeric]
            if noise:
                frame[numeric] = frame[numeric] + rng.normal(0, 1, (len(frame), len(numeric))) * (noise * training[numeric].std().to_numpy())
            if copies < request.n:
                sub = request.model_copy(update={"n": request.n - copies})
                frame = pd.concat([frame, fallback.generate(sub, context)[0].frame], ignore_index=True)
            return [TableOutput(frame)]

    return CopyFamily()


@pytest.fixture
def privacy_plugins():
    import gensdk_gmm.plugin
    import gensdk_privacy.plugin

    return [gensdk_privacy.plugin, gensdk_gmm.plugin]


@pytest.fixture
def copy_family_factory():
    return make_copy_family
