"""Hook implementations of the GMM family; named by the `gensdk` entry point `gmm`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_model_families(register: Registrar) -> None:
    from gensdk_gmm.model import GMMFamily

    register(GMMFamily)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_gmm.cli import train_gmm

    cli.commands["train"].add_command(train_gmm)  # type: ignore[attr-defined]
