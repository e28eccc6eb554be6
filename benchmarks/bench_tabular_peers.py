"""gensdk's table GAN and VAE beside SDV's CTGAN and TVAE on UCI Adult, in one run, with the same epochs.

What is measured, for each of gan-table, vae-table, SDV CTGAN, SDV TVAE (same epochs, same batch size 500,
same single torch thread, same 80% training split of Adult; the rest is held out):

* SDMetrics QualityReport score (column shapes and column-pair trends) of as many synthetic rows as training rows;
* ML efficacy: a gradient-boosted classifier trained on the synthetic rows, tested on the real held-out rows:
  AUC for `income` (beside the same classifier trained on the real training rows);
* fit seconds per epoch (everything `fit` does, preprocessing included, divided by the epochs) and sampling
  rows/s, with their ratio to the faster peer;
* imputation: a vae-table model (beta 0.1, `--impute-epochs`) fitted on the training split with 20% of its
  cells masked, filling those cells, beside mean/mode imputation and scikit-learn's IterativeImputer fitted on
  the same masked table (numbers: RMSE / std, averaged over columns; categories: share filled wrong).

SDV's licence (Business Source License) is not open source: SDV and SDMetrics live in a separate virtual
environment made for this benchmark only, never in gensdk's dependencies. Setup (CPU torch first, so that
SDV does not pull a CUDA build):

    python -m venv /tmp/sdv-venv
    /tmp/sdv-venv/bin/pip install torch==2.13.0
    /tmp/sdv-venv/bin/pip install sdv sdmetrics pydantic pluggy click rich platformdirs cryptography safetensors pillow

Run (from the repository root; gensdk is imported from the source tree):

    /tmp/sdv-venv/bin/python benchmarks/bench_tabular_peers.py --epochs 20

`--skip-peers` runs ours alone (no SDV needed), `--skip-imputation` skips the imputation section.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]
TARGET = "income"
POSITIVE = ">50K"


def split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    test = frame.sample(frac=0.2, random_state=seed)
    return frame.drop(test.index).reset_index(drop=True), test.reset_index(drop=True)


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


# -- the models -----------------------------------------------------------------------------------------------


def fit_ours(name: str, train: pd.DataFrame, epochs: int, seed: int) -> tuple[object, float]:
    from gensdk_gan import TableGANFamily
    from gensdk_vae import TableVAEFamily

    family = {"gan-table": TableGANFamily, "vae-table": TableVAEFamily}[name]
    model = family({"epochs": epochs, "batch_size": 500, "seed": seed, "target": TARGET, "device": "cpu"})
    started = time.perf_counter()
    model.fit(train)
    return model, time.perf_counter() - started


def fit_peer(name: str, train: pd.DataFrame, epochs: int) -> tuple[object, float]:
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, TVAESynthesizer

    columns = {c: {"sdtype": "categorical"} if c in categorical_columns(train) else {"sdtype": "numerical"} for c in train.columns}
    metadata = Metadata.load_from_dict({"tables": {"adult": {"columns": columns}}})
    synth_class = {"sdv-ctgan": CTGANSynthesizer, "sdv-tvae": TVAESynthesizer}[name]
    model = synth_class(metadata, epochs=epochs, batch_size=500, enable_gpu=False)
    started = time.perf_counter()
    model.fit({"adult": train})  # SDV 2 takes single tables as a one-entry dict too
    return model, time.perf_counter() - started


def sample(name: str, model: object, n: int, seed: int) -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    if name.startswith("sdv-"):
        frame = model.sample(n)  # type: ignore[attr-defined]
        frame = frame["adult"] if isinstance(frame, dict) else frame
    else:
        frame = model.sample(n, seed=seed)  # type: ignore[attr-defined]
    return frame, time.perf_counter() - started


# -- the scores -----------------------------------------------------------------------------------------------


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    from sdmetrics.reports.single_table import QualityReport

    columns = {c: {"sdtype": "categorical"} if c in categorical_columns(real) else {"sdtype": "numerical"} for c in real.columns}
    report = QualityReport()
    report.generate(real, synthetic[real.columns], {"columns": columns}, verbose=False)
    return float(report.get_score())


def efficacy(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """AUC on the real held-out rows of a classifier trained on `train` (real or synthetic)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    features = [c for c in test.columns if c != TARGET]
    cats = [c for c in categorical_columns(test) if c != TARGET]

    def encode(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[features].copy()
        for c in cats:
            out[c] = pd.Categorical(out[c].astype(str), categories=sorted(test[c].astype(str).unique().tolist() + ["?"]))
        return out

    y = (train[TARGET].astype(str) == POSITIVE).to_numpy()
    if y.all() or not y.any():
        return 0.5
    clf = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0).fit(encode(train), y)
    return float(roc_auc_score(test[TARGET].astype(str) == POSITIVE, clf.predict_proba(encode(test))[:, 1]))


# -- imputation -----------------------------------------------------------------------------------------------


def mask_cells(frame: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.random(frame.shape) < share
    masked = frame.copy().astype({c: "float64" for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])})
    masked = masked.mask(mask)
    return masked, mask


def imputation_errors(truth: pd.DataFrame, filled: pd.DataFrame, mask: np.ndarray) -> tuple[float, float]:
    """(mean over numeric columns of RMSE / std, share of masked categorical cells filled wrong)."""
    numeric, wrong, total = [], 0, 0
    for j, c in enumerate(truth.columns):
        rows = mask[:, j]
        if not rows.any():
            continue
        if c in categorical_columns(truth):
            wrong += int((filled[c].to_numpy()[rows].astype(str) != truth[c].to_numpy()[rows].astype(str)).sum())
            total += int(rows.sum())
        else:
            err = filled[c].to_numpy(float)[rows] - truth[c].to_numpy(float)[rows]
            numeric.append(float(np.sqrt(np.mean(err**2)) / truth[c].std()))
    return float(np.mean(numeric)), wrong / max(total, 1)


def impute_baselines(masked: pd.DataFrame) -> dict[str, pd.DataFrame]:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    cats = categorical_columns(masked)
    mean_mode = masked.copy()
    for c in masked.columns:
        mean_mode[c] = masked[c].fillna(masked[c].mode()[0] if c in cats else masked[c].mean())
    # IterativeImputer is numeric: categories become codes, imputed codes are rounded back to categories.
    codes = masked.copy()
    levels = {}
    for c in cats:
        cat = pd.Categorical(masked[c])
        levels[c] = cat.categories
        codes[c] = np.where(cat.codes < 0, np.nan, cat.codes)
    values = IterativeImputer(max_iter=10, random_state=0).fit_transform(codes.to_numpy(float))
    iterative = pd.DataFrame(values, columns=masked.columns)
    for c in cats:
        iterative[c] = np.asarray(levels[c])[np.clip(np.round(iterative[c]).astype(int), 0, len(levels[c]) - 1)]
    return {"mean/mode": mean_mode, "IterativeImputer": iterative}


def run_imputation(train: pd.DataFrame, epochs: int, seed: int) -> list[dict]:
    from gensdk_vae import TableVAEFamily

    masked, mask = mask_cells(train, 0.2, seed)
    rows = []
    started = time.perf_counter()
    # beta 0.1: imputation wants faithful reconstructions more than a smooth latent space (the beta trade-off).
    model = TableVAEFamily({"epochs": epochs, "batch_size": 500, "beta": 0.1, "seed": seed, "device": "cpu", "diagnostic_rows": 0}).fit(masked)
    filled = model.impute(masked)
    candidates = {"gensdk vae-table": (filled, time.perf_counter() - started)}
    for name, frame in impute_baselines(masked).items():
        candidates[name] = (frame, float("nan"))
    for name, (frame, seconds) in candidates.items():
        num, cat = imputation_errors(train, frame, mask)
        rows.append({"method": name, "numeric_nrmse": round(num, 4), "categorical_error": round(cat, 4), "seconds": round(seconds, 1)})
    return rows


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every model (1: fastest on a shared 2-core machine)")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-imputation", action="store_true")
    parser.add_argument("--impute-epochs", type=int, default=30, help="Epochs of the imputation VAE.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from gensdk.datasets import load_adult

    train, test = split(load_adult(), args.seed)
    names = ["gan-table", "vae-table"] + ([] if args.skip_peers else ["sdv-ctgan", "sdv-tvae"])
    results = {"real": {"auc": round(efficacy(train, test), 4)}, "epochs": args.epochs, "train_rows": len(train)}
    for name in names:
        fit = fit_peer if name.startswith("sdv-") else fit_ours
        model, fit_s = fit(name, train, args.epochs) if name.startswith("sdv-") else fit(name, train, args.epochs, args.seed)
        synthetic, sample_s = sample(name, model, len(train), args.seed)
        results[name] = {"quality": round(quality(train, synthetic), 4), "auc": round(efficacy(synthetic, test), 4),
                         "fit_s_per_epoch": round(fit_s / args.epochs, 3), "sample_rows_per_s": round(len(train) / sample_s)}
        print(name, results[name], flush=True)
    if not args.skip_imputation:
        results["imputation"] = run_imputation(train, args.impute_epochs, args.seed)
    print_table(results, names)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(results: dict, names: list[str]) -> None:
    peers = [n for n in names if n.startswith("sdv-")]
    print(f"\nUCI Adult, {results['train_rows']} training rows, {results['epochs']} epochs each; real-data AUC {results['real']['auc']}")
    print("| model | QualityReport | ML efficacy AUC | fit s/epoch | sample rows/s |")
    print("|---|---|---|---|---|")
    for n in names:
        r = results[n]
        print(f"| {n} | {r['quality']:.4f} | {r['auc']:.4f} | {r['fit_s_per_epoch']:.3f} | {r['sample_rows_per_s']:,} |")
    if peers:
        best_q = max(results[p]["quality"] for p in peers)
        best_auc = max(results[p]["auc"] for p in peers)
        counterpart = {"gan-table": "sdv-ctgan", "vae-table": "sdv-tvae"}
        for n in (n for n in names if not n.startswith("sdv-")):
            r, peer = results[n], results[counterpart[n]]
            print(f"{n}: quality {r['quality'] - best_q:+.4f} vs the better peer, AUC {r['auc'] - best_auc:+.4f}; "
                  f"vs {counterpart[n]}: fit time per epoch x{r['fit_s_per_epoch'] / peer['fit_s_per_epoch']:.2f}, "
                  f"sampling rows/s x{r['sample_rows_per_s'] / peer['sample_rows_per_s']:.2f}")
    if "imputation" in results:
        print("\nImputation, 20% of training cells masked")
        print("| method | numeric RMSE/std | categorical error | seconds |")
        print("|---|---|---|---|")
        for row in results["imputation"]:
            print(f"| {row['method']} | {row['numeric_nrmse']:.4f} | {row['categorical_error']:.4f} | {row['seconds']} |")


if __name__ == "__main__":
    main()
