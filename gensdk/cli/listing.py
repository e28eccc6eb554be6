"""`gensdk plugins`, `gensdk models`, `gensdk policies`: what is installed, and where it came from."""

from __future__ import annotations

import click
from rich.table import Table

from gensdk.cli.output import console, print_json
from gensdk.plugins import get_plugin_host


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins: loaded, disabled by GENSDK_DISABLE_PLUGINS, or left out by GENSDK_LOAD_PLUGINS."""
    host = get_plugin_host()
    rows = [
        {"name": p.name, "distribution": p.distribution, "status": p.status,
         "hooks": sorted(c.name for c in host.pm.get_hookcallers(host.pm.get_plugin(p.name)) or [])
         if host.pm.get_plugin(p.name) is not None else []}
        for p in host.plugins
    ]
    if as_json:
        return print_json(rows)
    table = Table("plugin", "distribution", "status", "hooks")
    for row in rows:
        table.add_row(row["name"], row["distribution"], row["status"], ", ".join(row["hooks"]))
    console().print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List the installed model families and their capabilities."""
    host = get_plugin_host()
    rows = [
        {"id": r.id, "version": r.component.version, "modality": r.component.modality,
         "can_train": r.component.can_train, "can_stream": r.component.can_stream,
         "conditional": r.component.conditional, "plugin": r.plugin, "distribution": r.distribution}
        for r in host.families
    ]
    if as_json:
        return print_json(rows)
    table = Table("family", "version", "modality", "train", "stream", "conditional", "distribution")
    for row in rows:
        table.add_row(row["id"], row["version"], row["modality"], _yes(row["can_train"]),
                      _yes(row["can_stream"]), _yes(row["conditional"]), row["distribution"])
    console().print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def policies(as_json: bool) -> None:
    """List the installed policies (which run is up to the engine configuration)."""
    host = get_plugin_host()
    rows = [
        {"id": r.id, "version": r.component.version, "modalities": sorted(r.component.modalities),
         "plugin": r.plugin, "distribution": r.distribution,
         "doc": (r.component.__doc__ or "").strip().splitlines()[0] if r.component.__doc__ else ""}
        for r in host.policies
    ]
    if as_json:
        return print_json(rows)
    table = Table("policy", "version", "modalities", "distribution", "what it does")
    for row in rows:
        table.add_row(row["id"], row["version"], ", ".join(row["modalities"]), row["distribution"], row["doc"])
    console().print(table)


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"
