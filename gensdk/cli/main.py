"""Root of the `gensdk` command line. Errors are one readable line and an exit code, never a traceback
(set GENSDK_DEBUG=1 to see one)."""

from __future__ import annotations

import os
import sys
from typing import Sequence

import click
from rich.markup import escape

from gensdk.cli.output import error_console
from gensdk.errors import GensdkError

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE: a bug in gensdk or a plugin, not bad input


def build_cli(load_entrypoints: bool = True) -> click.Group:
    """A fresh command tree: the core commands, then whatever the installed plugins add."""
    from gensdk import __version__
    from gensdk.cli.audit import audit_group
    from gensdk.cli.batch import batch
    from gensdk.cli.generate import generate
    from gensdk.cli.listing import models, plugins, policies
    from gensdk.cli.serve import serve_group
    from gensdk.plugins import get_plugin_host

    cli = click.Group("gensdk", help="Generative models behind fail-closed policies and a tamper-evident audit trail.")
    click.version_option(__version__, prog_name="gensdk")(cli)
    for command in (plugins, models, policies, generate, audit_group, serve_group, batch):
        cli.add_command(command)
    cli.add_command(click.Group("train", help="Train a model family on your data."))
    get_plugin_host(load_entrypoints=load_entrypoints).pm.hook.register_commands(cli=cli)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    try:
        returned = build_cli().main(args=list(argv) if argv is not None else None, prog_name="gensdk", standalone_mode=False)
    except click.exceptions.Abort:
        error_console().print("aborted")
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except GensdkError as exc:
        # escape: a message may hold brackets ("pip install 'gensdk[gmm]'"); soft_wrap: one line, never folded
        error_console().print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except Exception as exc:  # a bug: say so in one line, keep the traceback for those who ask
        if os.environ.get("GENSDK_DEBUG"):
            raise
        error_console().print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))} (GENSDK_DEBUG=1 shows the traceback)", highlight=False, soft_wrap=True)
        return INTERNAL_ERROR_EXIT
    return returned if isinstance(returned, int) else 0


if __name__ == "__main__":
    main()
