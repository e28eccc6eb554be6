"""`gensdk privacy report DIR`: measure a trained table generator and keep the report beside it."""

from __future__ import annotations

from pathlib import Path

import click

from gensdk.cli.output import console, print_json


@click.group("privacy", help="Privacy checks of trained generators.")
def privacy_group() -> None:
    pass


@privacy_group.command("report")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--rows", type=click.IntRange(min=10), default=None, help="Synthetic / held-out rows (default: all held-out rows).")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic sample and the row draws.")
@click.option("--device", default="cpu", show_default=True, help="Device for the distance computations.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report(model_dir: Path, rows: int | None, seed: int, device: str, as_json: bool) -> None:
    """Distances to closest records and a membership-inference AUC; writes privacy_report.json into MODEL_DIR."""
    from gensdk.device import resolve_device
    from gensdk.family import read_manifest
    from gensdk.plugins import get_plugin_host
    from gensdk_privacy.report import privacy_report, write_report

    family = get_plugin_host().families.get(read_manifest(model_dir)["family"])
    result = privacy_report(family.load(model_dir), rows=rows, seed=seed, device=resolve_device(device))
    path = write_report(model_dir, result)
    if as_json:
        print_json(result)
        return
    _show(result, path)


def _show(result: dict, path: Path) -> None:
    from rich.table import Table

    table = Table(title=f"Privacy report ({result['rows']} synthetic vs {result['rows']} held-out rows)")
    table.add_column("distance to closest training record")
    for key in ("mean", "p01", "p05", "p50"):
        table.add_column(key, justify="right")
    for name in ("synthetic", "holdout"):
        stats = result["dcr"][name]
        table.add_row(name, *(f"{stats[k]:.4f}" for k in ("mean", "p01", "p05", "p50")))
    out = console()
    out.print(table)
    mia = result["membership_inference"]
    out.print(f"synthetic rows closer than the held-out 5% quantile: {result['synthetic_closer_than_holdout_p05']:.2%} (fresh data: 5%)")
    out.print(f"exact copies of training records: {result['exact_copies']}")
    out.print(f"membership inference AUC ({mia['attack']}): {mia['auc']:.3f} (0.5 = no leak)")
    out.print(f"[green]written[/green] {path}")
