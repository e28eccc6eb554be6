"""Hook implementations of the LLM family; named by the `gensdk` entry point `llm`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_model_families(register: Registrar) -> None:
    from gensdk_llm.model import LLMFamily

    register(LLMFamily)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_llm.cli import train_llm

    cli.commands["train"].add_command(train_llm)  # type: ignore[attr-defined]
