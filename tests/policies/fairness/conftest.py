"""Fixtures of the fairness tests: small real data (UCI Adult, digits) and small models trained here, once per
session, on one thread (two cores are shared with other jobs: more threads spin against each other).

* `adult`: 2,000 rows and 7 columns of UCI Adult (the shipped copy), enough for every group of `sex`.
* `gmm`: a 3-component GMM fitted on it (200 rows held out as its training reference).
* `tiny_lm`: a GPT-2 of width 32 trained by gensdk on a few KB of text, for counterfactual prompt audits.
* `digit_family`: an image family that returns real digits in chosen class proportions (a test double whose
  output distribution is known exactly).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

POLICIES = Path(__file__).resolve().parents[3] / "policies"
if importlib.util.find_spec("gensdk_fairness") is None:
    sys.path.insert(0, str(POLICIES))

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
ADULT_COLUMNS = ["age", "education_num", "relationship", "sex", "race", "hr_per_week", "income"]
TINY_TRAINING = dict(vocab_size=300, n_layer=2, n_embd=32, n_head=2, context=64, batch_size=16, steps=15,
                     learning_rate=5e-3, warmup_steps=5, license="public domain", data_source="test text")


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def adult() -> Any:
    from gensdk.datasets import load_adult

    return load_adult()[ADULT_COLUMNS].sample(2000, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="session")
def gmm(adult: Any) -> Any:
    from gensdk_gmm import GMMFamily

    return GMMFamily({"n_components": 3, "max_iter": 15, "seed": 0}).fit(adult)


@pytest.fixture
def plugins() -> list[Any]:
    import gensdk_fairness.plugin
    import gensdk_gmm.plugin

    return [gensdk_fairness.plugin, gensdk_gmm.plugin]


@pytest.fixture
def engine(tmp_path: Path, plugins: list[Any]) -> Any:
    from gensdk.testing import make_engine

    with make_engine(tmp_path, plugins=plugins) as eng:
        yield eng


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from gensdk.datasets import load_tinyshakespeare
    from gensdk_llm import LLMFamily

    text = tmp_path_factory.mktemp("text") / "tiny.txt"
    text.write_text(load_tinyshakespeare()[:16_000], encoding="utf-8")
    return LLMFamily(train_options=TINY_TRAINING).fit(text)


def make_digit_family(shares: dict[int, float]) -> Any:
    """An image 'model' returning real 8x8 digits, class c with probability shares[c], seeded."""
    import numpy as np

    from gensdk.family import ModelFamily
    from gensdk.images import load_digits
    from gensdk.outputs import ImageOutput

    digits = load_digits()
    by_class = {c: digits.pixels[digits.labels == c] for c in shares}
    classes, probs = list(shares), np.array(list(shares.values()), dtype=float)

    class DigitFamily(ModelFamily):
        id = "digits-sampler"
        version = "1"
        modality = "image"
        conditional = True

        def validate_request(self, request: Any) -> None:
            pass

        def _generate(self, request: Any, params: Any, context: Any) -> list[Any]:
            rng = np.random.default_rng(context.seed)
            picks = rng.choice(classes, size=request.n, p=probs / probs.sum())
            return [ImageOutput(by_class[c][rng.integers(len(by_class[c]))]) for c in picks]

        def save(self, path: Any) -> Any:
            raise NotImplementedError

        @classmethod
        def load(cls, path: Any) -> Any:
            raise NotImplementedError

    return DigitFamily()


@pytest.fixture
def digit_family() -> Callable[[dict[int, float]], Any]:
    return make_digit_family


@pytest.fixture
def records_of() -> Callable[[Any, str], list[dict]]:
    """The bodies of the audit trail's records of one kind."""

    def read(engine: Any, kind: str) -> list[dict]:
        return [r["body"] for r in engine.audit.records() if r["body"].get("kind") == kind]

    return read


@pytest.fixture(scope="session")
def tiny_gan(adult: Any) -> Any:
    """A table GAN declaring `sex` and `race` sensitive and `income` its target (2 epochs on 600 rows)."""
    from gensdk_gan import TableGANFamily

    options = dict(epochs=2, batch_size=100, pac=10, noise_dim=16, generator_dims=[32], critic_dims=[32], max_modes=3,
                   diagnostic_rows=0, seed=0, target="income", sensitive=["sex", "race"])
    return TableGANFamily(options).fit(adult.iloc[:600])
