"""Hook implementations of the VAE families; named by the `gensdk` entry point `vae`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_model_families(register: Registrar) -> None:
    from gensdk_vae.family import ImageVAEFamily, TableVAEFamily

    register(TableVAEFamily)
    register(ImageVAEFamily)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_vae.cli import anomaly, impute, train_vae

    cli.commands["train"].add_command(train_vae)  # type: ignore[attr-defined]
    cli.add_command(anomaly)
    cli.add_command(impute)
