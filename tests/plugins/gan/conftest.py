"""Fixtures of the GAN tests: tiny networks on 500 Adult rows and 300 digits, trained once per session.

Until pyproject.toml declares the `gan` and `vae` entry points (and the project is reinstalled), gensdk_gan and
gensdk_vae are imported from the source tree; engines get the plugins passed explicitly, and CLI tests add the
entry points to what gensdk discovers (the `gensdk` fixture).
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable

import pytest

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"
if importlib.util.find_spec("gensdk_gan") is None or importlib.util.find_spec("gensdk_vae") is None:
    sys.path.insert(0, str(PLUGINS))

ENTRY_POINTS = [EntryPoint(name="gan", value="gensdk_gan.plugin", group="gensdk"),
                EntryPoint(name="vae", value="gensdk_vae.plugin", group="gensdk")]
# Small enough to train in seconds on two busy cores; the figures that matter come from the benchmarks.
TINY_TABLE_GAN = dict(epochs=2, batch_size=100, pac=10, noise_dim=16, generator_dims=[32], critic_dims=[32],
                      max_modes=3, diagnostic_rows=300, seed=0, target="income", sensitive=["sex", "race"])
TINY_IMAGE_GAN = dict(epochs=2, batch_size=32, noise_dim=8, width=8, diagnostic_samples=100, seed=0)


def adult_rows(n: int = 500) -> Any:
    from gensdk.datasets import load_adult

    return load_adult().sample(n, random_state=0).reset_index(drop=True)


def digits_subset(n: int = 300) -> Any:
    from gensdk.images import ImageData, load_digits

    data = load_digits()
    return ImageData(data.pixels[:n], data.labels[:n], data.classes)


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One torch thread: on two cores shared with other jobs, two threads spin against each other (10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def table_gan():
    from gensdk_gan import TableGANFamily

    return TableGANFamily(TINY_TABLE_GAN).fit(adult_rows())


@pytest.fixture(scope="session")
def image_gan():
    from gensdk_gan import ImageGANFamily

    return ImageGANFamily(TINY_IMAGE_GAN).fit(digits_subset())


@pytest.fixture
def gensdk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `gensdk ARGS...` in process with the gan and vae entry points declared; (exit code, stdout, stderr)."""
    import gensdk.plugins
    from gensdk.cli import main as cli_main

    declared = set(entry_points(group="gensdk").names)
    extra = [ep for ep in ENTRY_POINTS if ep.name not in declared]
    monkeypatch.setattr(gensdk.plugins, "entry_points", lambda group: [*entry_points(group=group), *extra])
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: Any) -> tuple[int, str, str]:
        code = cli_main.run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def adult500() -> Any:
    return adult_rows()
