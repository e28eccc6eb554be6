"""`gensdk serve CONFIG` runs the HTTP service; `gensdk serve hash-key` makes an API key; `gensdk serve check
CONFIG` validates a configuration (and loads its models) without listening.

A configuration error stops start-up with one line and exit code 2, before anything listens.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["serve_group"]


class _ServeGroup(click.Group):
    """`gensdk serve CONFIG` means `gensdk serve run CONFIG`; named subcommands work as usual."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("serve", cls=_ServeGroup)
def serve_group() -> None:
    """Serve models over HTTP behind the policies: gensdk serve CONFIG (see docs/server.md)."""


@serve_group.command("run")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--host", default=None, help="Override [server] host.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Override [server] port.")
def run_command(config: Path, host: str | None, port: int | None) -> None:
    """Start the server (foreground; SIGINT or SIGTERM stops it after the requests in flight)."""
    from gensdk.server.app import serve

    serve(_service(config, host, port))


@serve_group.command("check")
@click.argument("config", type=click.Path(path_type=Path))
def check_command(config: Path) -> None:
    """Validate CONFIG, build the engine and load every model, then exit (0: it would start)."""
    service = _service(config, None, None)
    names = ", ".join(f"{n} ({s.model.id})" for n, s in service.models.items())
    service.close()
    click.echo(f"OK {config}: {len(service.models)} model(s): {names}; {len(service.config.keys)} API key(s)")


def _service(config: Path, host: str | None, port: int | None) -> Any:
    from gensdk.server import Service, load_server_config

    cfg = load_server_config(config)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update=overrides)})
    return Service(cfg)


@serve_group.command("hash-key")
@click.option("--name", default="client", show_default=True, help="The key's name (logged and audited; the key never is).")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(["generate", "detect", "audit-read"]),
              help="Scopes of the key (repeat); default: generate.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Hash a key read from standard input instead of making one.")
def hash_key_command(name: str, scopes: tuple[str, ...], from_stdin: bool) -> None:
    """Make a new API key: prints the key once (give it to the client) and the [[keys]] entry to paste into
    the server configuration, which holds only its hash."""
    from gensdk.errors import ConfigError
    from gensdk.server.keys import KeyRing, hash_key, new_key
    from gensdk.server.config import ApiKeyConfig

    key = sys.stdin.readline().strip() if from_stdin else new_key()
    entry = ApiKeyConfig(name=name, hash=hash_key(key), scopes=list(scopes or ["generate"]))  # type: ignore[arg-type]
    if KeyRing([entry]).identify(key) is None:
        raise ConfigError("that is not a gensdk API key (gsk_ and 43 characters); make one with `gensdk serve hash-key`")
    if not from_stdin:
        click.echo(f"key (shown once, keep it secret): {key}", err=True)
    click.echo("[[keys]]")
    click.echo(f'name = "{entry.name}"')
    click.echo(f'hash = "{entry.hash}"')
    click.echo("scopes = [" + ", ".join(f'"{s}"' for s in entry.scopes) + "]")
