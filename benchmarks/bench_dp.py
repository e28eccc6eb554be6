"""Differentially private training of gensdk's table GAN and VAE on UCI Adult: what ε costs in quality and in
machine-learning efficacy, beside the same families trained without DP, in one run.

For `gan-table` and `vae-table`, without DP and with DP-SGD (Opacus) at each ε of `--epsilons` (δ = 1e-5, per-row
gradient norm bound 1.0), same epochs, same batch size 500, one torch thread, the same 80% training split of
Adult as bench_tabular_peers.py (the rest held out):

* ε actually spent (RDP accountant) and the noise multiplier Opacus chose for the budget;
* SDMetrics QualityReport score of as many synthetic rows as training rows (when sdmetrics is importable);
* ML efficacy: a gradient-boosted classifier trained on the synthetic rows, AUC for `income` on the real held-out
  rows (beside the same classifier trained on the real training rows);
* fit seconds per epoch, and its ratio to the same family without DP.

The GAN's auxiliary target classifier reads real rows outside the accountant, so DP runs go without it; the
table also shows the GAN without DP and without the classifier, to separate what DP costs from what the
classifier gives. SDMetrics lives in the peers' benchmark environment (see bench_tabular_peers.py; add
`pip install opacus==1.6.0` there); without it, pass `--no-quality` and run with the project's venv:

    /tmp/sdv-venv/bin/python benchmarks/bench_dp.py --epochs 10
    .venv/bin/python benchmarks/bench_dp.py --epochs 10 --no-quality
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins"), str(Path(__file__).resolve().parent)]

from bench_tabular_peers import TARGET, efficacy, quality, split  # noqa: E402


def variants(epsilons: list[float]) -> list[tuple[str, str, dict]]:
    """(label, family, extra options) for every run."""
    runs = []
    for family in ("gan-table", "vae-table"):
        runs.append((f"{family}, no DP", family, {}))
        if family == "gan-table":
            runs.append((f"{family}, no DP, no classifier", family, {"classifier_weight": 0.0}))
        runs += [(f"{family}, ε = {eps:g}", family, {"dp_epsilon": eps, "dp_delta": 1e-5}) for eps in epsilons]
    return runs


def run(family: str, extra: dict, train, test, epochs: int, seed: int, with_quality: bool) -> dict:
    from gensdk_gan import TableGANFamily
    from gensdk_vae import TableVAEFamily

    cls = {"gan-table": TableGANFamily, "vae-table": TableVAEFamily}[family]
    options = {"epochs": epochs, "batch_size": 500, "seed": seed, "target": TARGET, "device": "cpu", **extra}
    started = time.perf_counter()
    model = cls(options).fit(train)
    fit_s = time.perf_counter() - started
    synthetic = model.sample(len(train), seed=seed)
    dp = model.metadata.get("differential_privacy", {})
    return {"epsilon_spent": dp.get("epsilon"), "noise_multiplier": dp.get("noise_multiplier"),
            "quality": round(quality(train, synthetic), 4) if with_quality else None,
            "auc": round(efficacy(synthetic, test), 4), "fit_s_per_epoch": round(fit_s / model.metadata["epochs_run"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-quality", action="store_true", help="Skip SDMetrics (not installed in gensdk's venv).")
    parser.add_argument("--only", choices=["gan-table", "vae-table"], default=None, help="Run one family.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from gensdk.datasets import load_adult

    train, test = split(load_adult(), args.seed)
    results = {"epochs": args.epochs, "train_rows": len(train), "real_auc": round(efficacy(train, test), 4), "runs": {}}
    for label, family, extra in variants(args.epsilons):
        if args.only and family != args.only:
            continue
        results["runs"][label] = run(family, extra, train, test, args.epochs, args.seed, not args.no_quality)
        print(label, results["runs"][label], flush=True)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(results: dict) -> None:
    print(f"\nUCI Adult, {results['train_rows']} training rows, {results['epochs']} epochs, batch 500, δ = 1e-5; "
          f"real-data AUC {results['real_auc']}")
    print("| model | ε spent | noise multiplier | QualityReport | ML efficacy AUC | fit s/epoch | fit time vs no DP |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results["runs"].items():
        base = results["runs"].get(label.split(",")[0] + ", no DP")
        ratio = f"x{r['fit_s_per_epoch'] / base['fit_s_per_epoch']:.2f}" if base and r["epsilon_spent"] is not None else ""
        eps = "-" if r["epsilon_spent"] is None else f"{r['epsilon_spent']:.3f}"
        noise = "-" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.3f}"
        q = "-" if r["quality"] is None else f"{r['quality']:.4f}"
        print(f"| {label} | {eps} | {noise} | {q} | {r['auc']:.4f} | {r['fit_s_per_epoch']:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
