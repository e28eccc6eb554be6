"""Consoles and small parsing helpers shared by the commands."""

from __future__ import annotations

import json
from typing import Any, Iterable

import click
from rich.console import Console


def console() -> Console:
    return Console()


def error_console() -> Console:
    return Console(stderr=True)


def parse_assignments(items: Iterable[str], what: str) -> dict[str, Any]:
    """`key=value` pairs; values are JSON when they parse as JSON (numbers, lists), strings otherwise."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
