"""`gensdk example hello`: a command contributed by a third-party plugin."""

from __future__ import annotations

import click


@click.group("example", help="Commands of the gensdk-example-plugin distribution.")
def example_group() -> None:
    pass


@example_group.command("hello")
@click.option("--name", default="world", show_default=True, help="Who to greet.")
def hello(name: str) -> None:
    """Greet, proving a plugin's command reached the gensdk CLI."""
    from gensdk_example.model import EchoFamily

    click.echo(f"hello, {name}, from gensdk-example-plugin (family {EchoFamily.id!r})")
