"""`gensdk train llm`: train a byte-level BPE tokenizer and a small GPT-2 on a text file."""

from __future__ import annotations

from pathlib import Path

import click

from gensdk.cli.output import console
from gensdk.cli.progress import progress_bar


@click.command("llm")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Training text (UTF-8 file).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Model directory to write.")
@click.option("--steps", default=2000, show_default=True, help="Optimiser steps at most.")
@click.option("--minutes", type=float, default=None, help="Time budget; training stops at --steps or here.")
@click.option("--layers", "n_layer", default=4, show_default=True, help="Transformer blocks.")
@click.option("--width", "n_embd", default=128, show_default=True, help="Embedding width.")
@click.option("--heads", "n_head", default=4, show_default=True, help="Attention heads.")
@click.option("--context", default=128, show_default=True, help="Context window in tokens.")
@click.option("--vocab-size", default=2048, show_default=True, help="BPE vocabulary size.")
@click.option("--batch-size", default=16, show_default=True, help="Windows per optimiser step.")
@click.option("--lr", "learning_rate", default=3e-3, show_default=True, help="Peak learning rate.")
@click.option("--seed", default=0, show_default=True, help="Seed of initialisation and batch sampling.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--license", "license_", default=None, help="Licence of the training text, kept with the model.")
@click.option("--data-source", default=None, help="Where the training text came from, kept with the model.")
def train_llm(data: Path, out: Path, license_: str | None, **options: object) -> None:
    """Train a small GPT-2 language model on a text file and save it as a Hugging Face directory."""
    from gensdk_llm.model import LLMFamily
    from gensdk_llm.train import TrainOptions

    opts = TrainOptions.parse({**options, "license": license_})
    model = LLMFamily(train_options=opts)
    with progress_bar("training") as progress:
        model.fit(data, progress=progress)
    model.save(out)
    t = model.metadata["training"]
    console().print(
        f"[green]saved[/green] {out}: {t['steps']} steps in {t['seconds']:.0f} s on {t['train_tokens']:,} training "
        f"tokens; held-out perplexity {t['heldout_perplexity_before']:.1f} -> {t['heldout_perplexity_after']:.1f}",
        highlight=False,
    )
