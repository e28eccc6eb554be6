"""Hook implementations of gensdk_diffusion; named by the `gensdk` entry point `diffusion`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_model_families(register: Registrar) -> None:
    from gensdk_diffusion.model import DiffusionFamily

    register(DiffusionFamily)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_diffusion.cli import train_diffusion

    cli.commands["train"].add_command(train_diffusion)  # type: ignore[attr-defined]
