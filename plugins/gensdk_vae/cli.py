"""`gensdk train vae`, `gensdk anomaly` (score rows or images) and `gensdk impute` (fill missing cells)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from gensdk.cli.output import console
from gensdk_gan.cli import AUDIT_HELP, family_options, resolve_kind, train_and_report, training_options


@click.command("vae")
@training_options
@click.option("--beta", type=float, default=None, help="Weight of the KL term (below 1: sharper samples).")
def train_vae(data: str, out: Path, kind: str, beta: float | None, **given: Any) -> None:
    """Train a VAE on a table (TVAE-style) or on images (conditional convolutional VAE) and save it."""
    from gensdk_vae.family import ImageVAEFamily, TableVAEFamily

    kind = resolve_kind(kind, data)
    options = {k: v for k, v in {**family_options(kind, data, **given), "beta": beta}.items() if v is not None}
    train_and_report(TableVAEFamily(options) if kind == "table" else ImageVAEFamily(options), data, out)


@click.command("anomaly")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("data")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="CSV of the rows (or files) with a score column.")
@click.option("--top", type=int, default=10, show_default=True, help="Print the highest-scoring rows.")
@click.option("--seed", type=int, default=0, show_default=True)
def anomaly(model_dir: Path, data: str, out: Path | None, top: int, seed: int) -> None:
    """Score DATA (a CSV, or an image folder) with a VAE: the negative ELBO, higher is more anomalous."""
    import pandas as pd

    from gensdk.errors import RequestError
    from gensdk.family import read_manifest
    from gensdk.plugins import get_plugin_host
    from gensdk.tabular import read_table

    # Scores are not generated data: the model is loaded through the installed families, without an engine
    # (no policy has anything to check, nothing to add to the audit trail).
    model = get_plugin_host().families.get(read_manifest(model_dir)["family"]).load(model_dir)
    if not hasattr(model, "anomaly_scores"):
        raise RequestError(f"{model_dir} holds a {model.id} model; anomaly scores need a vae-table or vae-image model")
    if model.modality == "table":
        frame = read_table(Path(data))
        scored = frame.assign(anomaly_score=model.anomaly_scores(frame, seed=seed))
    else:
        from gensdk.images import _image_files

        files = _image_files(Path(data)) or sorted(p for d in Path(data).iterdir() if d.is_dir() for p in _image_files(d))
        scored = pd.DataFrame({"file": [str(f) for f in files], "anomaly_score": model.anomaly_scores(data, seed=seed)})
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        scored.to_csv(out, index=False)
        console().print(f"[green]wrote[/green] {out}: {len(scored)} scores")
    console().print(scored.sort_values("anomaly_score", ascending=False).head(top).to_string(), highlight=False)


@click.command("impute")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="CSV with the missing cells filled.")
@click.option("--config", "config", type=click.Path(path_type=Path), default=None, envvar="GENSDK_CONFIG", help="gensdk.toml with the policies to enforce.")
@click.option("--audit", "audit", default=None, envvar="GENSDK_AUDIT", help=AUDIT_HELP)
def impute(model_dir: Path, data: Path, out: Path, config: Path | None, audit: str | None) -> None:
    """Fill the missing cells of DATA with a vae-table model, through every enabled policy."""
    from gensdk.engine import Engine
    from gensdk.errors import RequestError
    from gensdk.tabular import read_table

    frame = read_table(data)
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
               for row in frame.astype(object).to_dict(orient="records")]
    with Engine(config, audit=audit) as engine:
        model = engine.load_model(model_dir)
        if model.id != "vae-table":
            raise RequestError(f"{model_dir} holds a {model.id} model; imputation needs a vae-table model")
        result = engine.generate(model, {"n": len(records), "seed": 0, "params": {"impute": records}})
        result.raise_for_verdict()
    filled = result.table()
    out.parent.mkdir(parents=True, exist_ok=True)
    filled.to_csv(out, index=False)
    console().print(f"[green]wrote[/green] {out}: {int(frame.isna().sum().sum())} missing cells filled in {len(frame)} rows "
                    f"(audit record {result.audit_record_id})", highlight=False)
