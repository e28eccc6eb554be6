"""Fixtures the GAN and VAE tests share (both conftests import them): tiny networks on 500 Adult rows and 300
digits, trained once per session; one torch thread; the `gensdk` command run in process; reading the audit
trail. Small enough to train in seconds on two busy cores: the figures that matter come from the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

__all__ = ["TINY_IMAGE_GAN", "TINY_IMAGE_VAE", "TINY_TABLE_GAN", "TINY_TABLE_VAE", "adult500", "adult_rows",
           "audit_body", "digits_subset", "gensdk", "image_gan", "image_vae", "single_thread", "table_gan", "table_vae"]

TINY_TABLE_GAN = dict(epochs=2, batch_size=100, pac=10, noise_dim=16, generator_dims=[32], critic_dims=[32],
                      max_modes=3, diagnostic_rows=300, seed=0, target="income", sensitive=["sex", "race"])
TINY_IMAGE_GAN = dict(epochs=2, batch_size=32, noise_dim=8, width=8, diagnostic_samples=100, seed=0)
TINY_TABLE_VAE = dict(epochs=3, batch_size=100, latent_dim=8, hidden_dims=[32], learning_rate=3e-3,
                      max_modes=3, diagnostic_rows=300, seed=0, target="income", sensitive=["sex", "race"])
TINY_IMAGE_VAE = dict(epochs=10, batch_size=32, latent_dim=4, width=8, learning_rate=3e-3, diagnostic_samples=100, seed=0)


def adult_rows(n: int = 500) -> Any:
    from gensdk.datasets import load_adult

    return load_adult().sample(n, random_state=0).reset_index(drop=True)


def digits_subset(n: int = 300) -> Any:
    from gensdk.images import ImageData, load_digits

    data = load_digits()
    return ImageData(data.pixels[:n], data.labels[:n], data.classes)


def audit_body(audit_path: Path, record_id: str) -> dict[str, Any]:
    """The body of one record, read back from the audit database the way `gensdk audit` reads it."""
    from gensdk.audit import open_audit_sink

    sink = open_audit_sink(str(audit_path))
    try:
        record = sink.lookup(record_id)
    finally:
        sink.close()
    assert record is not None, f"audit record {record_id} is not in {audit_path}"
    return record["body"]


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One torch thread: on two cores shared with other jobs, two threads spin against each other (10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def adult500() -> Any:
    return adult_rows()


@pytest.fixture(scope="session")
def table_gan(adult500):
    from gensdk_gan import TableGANFamily

    return TableGANFamily(TINY_TABLE_GAN).fit(adult500)


@pytest.fixture(scope="session")
def image_gan():
    from gensdk_gan import ImageGANFamily

    return ImageGANFamily(TINY_IMAGE_GAN).fit(digits_subset())


@pytest.fixture(scope="session")
def table_vae(adult500):
    from gensdk_vae import TableVAEFamily

    return TableVAEFamily(TINY_TABLE_VAE).fit(adult500)


@pytest.fixture(scope="session")
def image_vae():
    from gensdk_vae import ImageVAEFamily

    return ImageVAEFamily(TINY_IMAGE_VAE).fit(digits_subset())


@pytest.fixture
def gensdk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `gensdk ARGS...` in process (the installed entry points name the gan and vae plugins); returns
    (exit code, stdout, stderr)."""
    from gensdk.cli import main as cli_main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: Any) -> tuple[int, str, str]:
        code = cli_main.run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
