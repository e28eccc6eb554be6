"""Hook implementations of the GAN families; named by the `gensdk` entry point `gan`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_model_families(register: Registrar) -> None:
    from gensdk_gan.family import ImageGANFamily, TableGANFamily

    register(TableGANFamily)
    register(ImageGANFamily)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_gan.cli import augment, train_gan

    cli.commands["train"].add_command(train_gan)  # type: ignore[attr-defined]
    cli.add_command(augment)
