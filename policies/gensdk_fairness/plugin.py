"""Hook implementations of gensdk_fairness; named by the `gensdk` entry point `fairness`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_policies(register: Registrar) -> None:
    from gensdk_fairness.window import ImageWindowPolicy, TableWindowPolicy, TextWindowPolicy

    for policy in (TableWindowPolicy, TextWindowPolicy, ImageWindowPolicy):
        register(policy)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_fairness.cli import bias_group

    cli.commands["audit"].add_command(bias_group)  # type: ignore[attr-defined]
