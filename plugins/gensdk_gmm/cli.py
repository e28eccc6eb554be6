"""`gensdk train gmm`: fit a Gaussian mixture on a CSV and save it as a model directory."""

from __future__ import annotations

from pathlib import Path

import click

from gensdk.cli.progress import progress_bar
from gensdk.cli.output import console


@click.command("gmm")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Training table (CSV).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Model directory to write.")
@click.option("--components", default=10, show_default=True, help="Mixture components.")
@click.option("--max-iter", default=200, show_default=True, help="EM iterations at most.")
@click.option("--seed", default=0, show_default=True, help="Seed of the EM initialisation.")
@click.option("--target", default=None, help="The prediction target column (declared for the fairness audits).")
@click.option("--sensitive", multiple=True, help="A sensitive attribute column (repeat); declared for the fairness audits.")
@click.option("--license", "license_", default=None, help="Licence of the training data, kept with the model.")
@click.option("--data-source", default=None, help="Where the training data came from, kept with the model.")
def train_gmm(data: Path, out: Path, components: int, max_iter: int, seed: int, target: str | None,
              sensitive: tuple[str, ...], license_: str | None, data_source: str | None) -> None:
    """Fit a Gaussian mixture on a table and save it."""
    from gensdk_gmm.model import GMMFamily

    model = GMMFamily(dict(n_components=components, max_iter=max_iter, seed=seed, target=target, sensitive=list(sensitive),
                           license=license_, data_source=data_source or str(data)))
    with progress_bar("EM") as progress:
        model.fit(data, progress=progress)
    model.save(out)
    meta = model.metadata
    console().print(
        f"[green]saved[/green] {out}: {meta['training_rows']} rows, {components} components, "
        f"{meta['em_iterations']} EM iterations, log-likelihood/row {meta['log_likelihood_per_row']:.3f}"
    )
