"""`gensdk train gan` (tables or images) and `gensdk augment` (top up minority classes through the engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gensdk.cli.output import console
from gensdk.cli.progress import progress_bar

AUDIT_HELP = "Audit trail (path or URL). Default: $GENSDK_AUDIT, else the user data directory."


def training_options(command: Any) -> Any:
    """The options `train gan` and `train vae` share."""
    options = [
        click.option("--data", "data", required=True, help="Training data: a CSV (tables), an image folder or 'digits' (images)."),
        click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Model directory to write."),
        click.option("--kind", type=click.Choice(["auto", "table", "image"]), default="auto", show_default=True,
                     help="Model tables or images; auto: a .csv is a table, a folder or 'digits' images."),
        click.option("--epochs", type=int, default=None, help="Training epochs (family default if unset)."),
        click.option("--batch-size", type=int, default=None, help="Rows or images per step."),
        click.option("--patience", type=int, default=None, help="Stop after this many epochs without improvement."),
        click.option("--time-budget", "time_budget_s", type=float, default=None, help="Stop after this many seconds."),
        click.option("--seed", default=0, show_default=True, help="Seed of initialisation and batch order."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--target", default=None, help="Tables: the prediction target column (gan-table learns rows label first; augment balances it)."),
        click.option("--sensitive", multiple=True, help="Tables: a sensitive attribute column (repeat)."),
        click.option("--license", "license_", default=None, help="Licence of the training data, kept with the model."),
        click.option("--data-source", default=None, help="Where the training data came from, kept with the model."),
        click.option("--dp-epsilon", type=float, default=None,
                     help="Train with differential privacy (DP-SGD, Opacus) spending at most this ε; needs gensdk[dp]."),
        click.option("--dp-delta", type=float, default=None, help="δ of the DP guarantee (default: 1e-5, or 0.1/rows if smaller)."),
        click.option("--dp-max-grad-norm", type=float, default=None, help="DP: per-row gradient clipping bound (default 1.0)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def family_options(kind: str, data: str, **given: Any) -> dict[str, Any]:
    options = {k: v for k, v in given.items() if v is not None and k not in ("target", "sensitive")}
    if kind == "table":
        options.update(target=given.get("target"), sensitive=list(given.get("sensitive") or ()))
    options["data_source"] = given.get("data_source") or data
    return options


def resolve_kind(kind: str, data: str) -> str:
    if kind != "auto":
        return kind
    return "image" if data == "digits" or Path(data).is_dir() else "table"


def train_and_report(family: Any, data: str, out: Path) -> None:
    model = family
    with progress_bar(f"{type(model).id}") as progress:
        model.fit(data, progress=progress)
    model.save(out)
    meta = model.metadata
    summary = (f"[green]saved[/green] {out}: {meta['epochs_run']} epochs ({meta['stopped']}), "
               f"{meta['seconds_per_epoch']:.2f} s/epoch")
    if "coverage" in meta:
        worst = min(meta["coverage"]["columns"].items(), key=lambda kv: kv[1]["coverage"], default=None)
        summary += f"; category coverage {meta['coverage']['mean_coverage']:.1%}"
        if worst and worst[1]["coverage"] < 1:
            summary += f" (lowest: {worst[0]!r} {worst[1]['covered']}/{worst[1]['categories']})"
    if "differential_privacy" in meta:
        dp = meta["differential_privacy"]
        summary += f"; differentially private: ε = {dp['epsilon']:.4g} spent (target {dp['target_epsilon']:g}), δ = {dp['delta']:.3g}"
    if "class_share" in meta:
        summary += (f"; smallest class share {meta['min_class_share']:.1%} of unconditional samples, "
                    f"conditional agreement {meta['conditional_agreement']:.1%}")
    console().print(summary, highlight=False)


@click.command("gan")
@training_options
@click.option("--pac", type=int, default=None, help="Tables: rows per critic pack (PacGAN).")
def train_gan(data: str, out: Path, kind: str, pac: int | None, **given: Any) -> None:
    """Train a GAN on a table (CTGAN-style) or on images (conditional DCGAN) and save it."""
    from gensdk_gan.family import ImageGANFamily, TableGANFamily

    kind = resolve_kind(kind, data)
    options = family_options(kind, data, **given)
    if kind == "table":
        options["pac"] = pac
        options = {k: v for k, v in options.items() if v is not None}
        model: Any = TableGANFamily(options)
    else:
        model = ImageGANFamily(options)
    train_and_report(model, data, out)


@click.command("augment")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="The class column to balance.")
@click.option("--balance", is_flag=True, help="Top up every class to the size of the largest.")
@click.option("--per-class", type=int, default=None, help="Top up every class to this many rows.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="A trained gan-table or vae-table model; without it one is trained on DATA.")
@click.option("--family", type=click.Choice(["gan-table", "vae-table"]), default="gan-table", show_default=True,
              help="Family to train when no --model is given.")
@click.option("--epochs", type=int, default=100, show_default=True, help="Epochs when training here.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Augmented CSV to write.")
@click.option("--flag-column", default=None, help="Add a boolean column of this name, true on synthetic rows.")
@click.option("--config", "config", type=click.Path(path_type=Path), default=None, envvar="GENSDK_CONFIG", help="gensdk.toml with the policies to enforce.")
@click.option("--audit", "audit", default=None, envvar="GENSDK_AUDIT", help=AUDIT_HELP)
def augment(data: Path, target: str, balance: bool, per_class: int | None, model_dir: Path | None, family: str,
            epochs: int, seed: int, out: Path, flag_column: str | None, config: Path | None, audit: str | None) -> None:
    """Add synthetic rows of the minority classes of TARGET, generated through every enabled policy."""
    import pandas as pd

    from gensdk.engine import Engine
    from gensdk.errors import DataError
    from gensdk.tabular import read_table

    if balance == (per_class is not None):
        raise click.UsageError("give exactly one of --balance and --per-class N")
    frame = read_table(data)
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in {data}; it has: {', '.join(map(str, frame.columns))}")
    counts = frame[target].value_counts()
    goal = int(counts.max()) if balance else int(per_class)  # type: ignore[arg-type]
    wanted = {value: goal - int(count) for value, count in counts.items() if count < goal}
    added = []
    with Engine(config, audit=audit) as engine:
        if model_dir is None:
            model: Any = engine.family(family)({"epochs": epochs, "seed": seed, "target": target, "data_source": str(data)})
            with progress_bar(family) as progress:
                model.fit(frame, progress=progress)
        else:
            model = engine.load_model(model_dir)
        for value, n in wanted.items():
            value = value.item() if hasattr(value, "item") else value
            result = engine.generate(model, {"n": n, "seed": seed, "conditions": {target: value}})
            result.raise_for_verdict()
            added.append(result.table())
            console().print(f"  {target}={value!r}: {len(added[-1])} rows added (audit record {result.audit_record_id})", highlight=False)
    synthetic = pd.concat(added, ignore_index=True) if added else frame.iloc[:0]
    if flag_column:
        frame, synthetic = frame.assign(**{flag_column: False}), synthetic.assign(**{flag_column: True})
    combined = pd.concat([frame, synthetic[frame.columns]], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    combined.to_csv(out, index=False)
    console().print(f"[green]wrote[/green] {out}: {len(frame)} real + {len(synthetic)} synthetic rows", highlight=False)
