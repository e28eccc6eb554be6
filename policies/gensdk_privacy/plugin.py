"""Hook implementations of gensdk_privacy; named by the `gensdk` entry point `privacy`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_policies(register: Registrar) -> None:
    from gensdk_privacy.memorisation import MemorisationPolicy
    from gensdk_privacy.pii import PIIPolicy
    from gensdk_privacy.replay import ReplayPolicy

    for policy in (PIIPolicy, MemorisationPolicy, ReplayPolicy):
        register(policy)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_privacy.cli import privacy_group

    cli.add_command(privacy_group)
