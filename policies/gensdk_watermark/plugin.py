"""Hook implementations of gensdk_watermark; named by the `gensdk` entry point `watermark`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk import hookimpl

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar


@hookimpl
def register_policies(register: Registrar) -> None:
    from gensdk_watermark.image import ImageWatermarkPolicy
    from gensdk_watermark.table import TableWatermarkPolicy
    from gensdk_watermark.text import TextWatermarkPolicy

    for policy in (TextWatermarkPolicy, ImageWatermarkPolicy, TableWatermarkPolicy):
        register(policy)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_watermark.detect_cli import detect_group, watermark_group

    cli.add_command(detect_group)
    cli.add_command(watermark_group)
