"""Hook implementations of the example plugin; named by the `gensdk` entry point `example`.

Imports stay inside the hooks, so loading the entry point costs nothing until gensdk asks for something.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_model_families(register: Registrar) -> None:
    from gensdk_example.model import EchoFamily

    register(EchoFamily)


@hookimpl
def register_policies(register: Registrar) -> None:
    from gensdk_example.policy import NoShouting

    register(NoShouting)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_example.cli import example_group

    cli.add_command(example_group)
