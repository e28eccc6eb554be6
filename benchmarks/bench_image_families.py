"""gensdk's class-conditional image GAN and VAE on scikit-learn's 8x8 digits, and VAE anomaly detection beside
scikit-learn's IsolationForest. Everything is local: the digits ship with scikit-learn.

* Class fidelity: an RBF support-vector classifier trained on the real digits labels 100 samples of each
  class asked for; the share labelled as the asked-for class (target >= 90%).
* Mode collapse: the same classifier labels 1,000 unconditional samples; every class should be >= 5% of them.
* Anomaly detection: the VAE trained on 80% of the digits 0-8 scores the other 20% of 0-8 (normal) and every
  9 (anomalous); AUROC of the negative ELBO beside IsolationForest trained on the same images.

Each model trains for the same time budget (default 90 s) on one torch thread:

    .venv/bin/python benchmarks/bench_image_families.py --budget 90
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def judge(data) -> object:
    from sklearn.svm import SVC

    return SVC(gamma=0.02, C=10).fit(data.pixels.flatten(1).numpy(), data.labels.numpy())


def class_fidelity(model, classifier, per_class: int = 100, unconditional: int = 1000) -> dict:
    accuracy = []
    for label in range(len(model.classes)):
        pixels = model.sample(per_class, seed=label, label=label).cpu().flatten(1).numpy()
        accuracy.append(float((classifier.predict(pixels) == label).mean()))
    judged = classifier.predict(model.sample(unconditional, seed=99).cpu().flatten(1).numpy())
    share = np.bincount(judged, minlength=len(model.classes)) / unconditional
    return {"conditional_accuracy": round(float(np.mean(accuracy)), 4), "worst_class_accuracy": round(min(accuracy), 4),
            "min_class_share": round(float(share.min()), 4), "max_class_share": round(float(share.max()), 4)}


def anomaly(budget: float, seed: int) -> dict:
    import torch
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    from gensdk.images import ImageData, load_digits
    from gensdk_vae import ImageVAEFamily

    data = load_digits()
    normal = torch.nonzero(data.labels != 9).flatten()
    order = normal[torch.randperm(len(normal), generator=torch.Generator().manual_seed(seed))]
    cut = int(0.8 * len(order))
    train, held = order[:cut], order[cut:]
    nines = torch.nonzero(data.labels == 9).flatten()
    train_data = ImageData(data.pixels[train], data.labels[train], data.classes[:9])
    model = ImageVAEFamily({"epochs": 100_000, "time_budget_s": budget, "seed": seed, "device": "cpu", "diagnostic_samples": 0}).fit(train_data)
    test = torch.cat([data.pixels[held], data.pixels[nines]])
    truth = np.r_[np.zeros(len(held)), np.ones(len(nines))]
    ours = roc_auc_score(truth, model.anomaly_scores(test))
    forest = IsolationForest(n_estimators=300, random_state=seed).fit(train_data.pixels.flatten(1).numpy())
    theirs = roc_auc_score(truth, -forest.score_samples(test.flatten(1).numpy()))
    return {"vae_auroc": round(float(ours), 4), "isolation_forest_auroc": round(float(theirs), 4),
            "normal_test_images": len(held), "anomalous_test_images": len(nines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=90.0, help="Training seconds per model.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from gensdk.images import load_digits
    from gensdk_gan import ImageGANFamily
    from gensdk_vae import ImageVAEFamily

    data = load_digits()
    classifier = judge(data)
    results: dict = {"budget_s": args.budget}
    for family in (ImageGANFamily, ImageVAEFamily):
        started = time.perf_counter()
        model = family({"epochs": 100_000, "time_budget_s": args.budget, "seed": args.seed, "device": "cpu"}).fit(data)
        results[family.id] = {"epochs": model.metadata["epochs_run"], "fit_s": round(time.perf_counter() - started, 1),
                              **class_fidelity(model, classifier)}
        print(family.id, results[family.id], flush=True)
    results["anomaly"] = anomaly(args.budget, args.seed)
    print(f"\nscikit-learn digits (1,797 8x8 images), {args.budget:.0f} s of training per model")
    print("| model | epochs | conditional accuracy (worst class) | class share of unconditional samples (min .. max) |")
    print("|---|---|---|---|")
    for name in ("gan-image", "vae-image"):
        r = results[name]
        print(f"| {name} | {r['epochs']} | {r['conditional_accuracy']:.1%} ({r['worst_class_accuracy']:.1%}) | "
              f"{r['min_class_share']:.1%} .. {r['max_class_share']:.1%} |")
    a = results["anomaly"]
    print(f"\nAnomaly detection (train 0-8, score {a['normal_test_images']} held-out 0-8 and {a['anomalous_test_images']} nines): "
          f"AUROC vae-image {a['vae_auroc']:.4f}, IsolationForest {a['isolation_forest_auroc']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
