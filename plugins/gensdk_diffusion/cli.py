"""`gensdk train diffusion`: train a small DDPM on images and save it as a standard diffusers directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gensdk.cli.output import console
from gensdk.cli.progress import progress_bar

DIGITS_LICENSE = "BSD-3-Clause (scikit-learn's copy of the UCI handwritten digits)"
DIGITS_SOURCE = "scikit-learn load_digits (UCI Optical Recognition of Handwritten Digits, 8x8)"


def _widths(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of channel counts (e.g. 16,32,64)") from None


@click.command("diffusion")
@click.option("--images", "images", required=True, help="Training images: a folder (one sub-folder per class, or "
              "images directly) or 'digits' (scikit-learn's handwritten digits).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Model directory to write.")
@click.option("--class-conditional", is_flag=True, help="Learn the classes too: generate with --condition class=C.")
@click.option("--size", type=int, default=16, show_default=True, help="Side of the square training images "
              "(digits are 8x8, upscaled); 0 keeps the images' own size.")
@click.option("--epochs", type=int, default=None, help="Epochs at most (default 200).")
@click.option("--time-budget-s", "time_budget_s", type=float, default=None, help="Stop after this many seconds.")
@click.option("--patience", type=int, default=None, help="Stop after this many epochs without a lower loss.")
@click.option("--batch-size", type=int, default=None, help="Images per optimiser step (default 64).")
@click.option("--lr", "learning_rate", type=float, default=None, help="Peak learning rate (default 2e-3).")
@click.option("--widths", callback=_widths, default=None, help="Channels per unet level, e.g. 16,32,64 (default).")
@click.option("--seed", default=0, show_default=True, help="Seed of initialisation, batch order and noise.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--license", "license_", default=None, help="Licence of the training images, kept with the model.")
@click.option("--data-source", default=None, help="Where the training images came from, kept with the model.")
def train_diffusion(images: str, out: Path, size: int, license_: str | None, data_source: str | None,
                    **given: Any) -> None:
    """Train a small DDPM (diffusers UNet2DModel) on images and save a diffusers DDPMPipeline directory."""
    from gensdk_diffusion.model import DiffusionFamily

    digits = images == "digits"
    options = {k: v for k, v in given.items() if v is not None and v is not False}  # unset: the family's defaults
    options.update(size=size or None,
                   license=license_ or (DIGITS_LICENSE if digits else None),
                   data_source=data_source or (DIGITS_SOURCE if digits else images))
    model = DiffusionFamily(train_options=options)
    with progress_bar("diffusion") as progress:
        model.fit(images, progress=progress)
    model.save(out)
    t = model.metadata["training"]
    console().print(
        f"[green]saved[/green] {out}: {model.kind} DDPM on {t['images']} images of "
        f"{'x'.join(map(str, t['image_shape'][1:]))}, {t['epochs_run']} epochs / {t['steps']} steps in "
        f"{t['seconds']:.0f} s ({t['stopped']}); loss {t['loss_history'][0]:.4f} -> {t['final_loss']:.4f}",
        highlight=False,
    )
