"""Privacy report of a trained table generator: how close its samples come to the training records, and how
well an attacker holding its samples tells training rows from held-out rows.

* Distance to closest record (DCR): synthetic rows and held-out rows (equal-size sets) against the training
  rows. A generator that generalises produces rows no closer than fresh data: the synthetic DCR quantiles
  should not sit below the held-out ones.
* Membership inference: score = -(distance to the closest synthetic row), members = training rows,
  non-members = held-out rows, both `rows` strong. AUC 0.5 means samples reveal nothing about membership;
  1.0 means every training row can be picked out.

The synthetic rows are drawn straight from the family for measurement only; none of them is released.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from gensdk.errors import ModelError
from gensdk.request import GenerationContext, Request

__all__ = ["REPORT_NAME", "privacy_report", "write_report"]

REPORT_NAME = "privacy_report.json"
QUANTILES = (0.01, 0.05, 0.5)


def privacy_report(model: Any, *, rows: int | None = None, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Measure `model` against the training reference it kept; `rows` defaults to the held-out size."""
    from sklearn.metrics import roc_auc_score

    from gensdk.reference import nearest_distances

    reference = model.training_reference()
    if reference is None:
        raise ModelError(f"model ({model.id}) kept no training reference: retrain it with holdout_fraction > 0")
    n = min(rows or len(reference.holdout), len(reference.holdout), len(reference.training))
    rng = np.random.default_rng(seed)
    synthetic = reference.encode(_sample(model, n, seed, device))
    holdout_rows = rng.choice(len(reference.holdout), n, replace=False)
    member_rows = rng.choice(len(reference.training), n, replace=False)
    synth_dcr = reference.distances_to_closest(synthetic, device=device)
    holdout_dcr = reference.holdout_dcr[holdout_rows]
    threshold = reference.holdout_quantile(0.05)
    import torch

    to_synthetic = torch.from_numpy(synthetic).to(device)
    scores = -np.concatenate([nearest_distances(reference.training[member_rows], to_synthetic),
                              nearest_distances(reference.holdout[holdout_rows], to_synthetic)])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    return {
        "model": model.identity(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed,
        "rows": n,
        "training_rows": len(reference.training),
        "holdout_rows": len(reference.holdout),
        "dcr": {"synthetic": _stats(synth_dcr), "holdout": _stats(holdout_dcr)},
        "synthetic_closer_than_holdout_p05": float((synth_dcr < threshold).mean()),
        "exact_copies": int(reference.exact_copies(synthetic, synth_dcr).sum()),
        "membership_inference": {
            "attack": "distance to closest synthetic row",
            "auc": float(roc_auc_score(labels, scores)),
            "members": n,
            "non_members": n,
        },
    }


def write_report(model_dir: str | Path, report: dict[str, Any]) -> Path:
    path = Path(model_dir) / REPORT_NAME
    path.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    return path


def _sample(model: Any, n: int, seed: int, device: str) -> Any:
    """`n` outputs of the model as its reference encodes them: one table, or a list of images."""
    import pandas as pd

    request = Request(n=n, seed=seed)
    context = GenerationContext(request=request, seed=seed, device=device, dtype="float32",
                                modality=model.modality, model_info=model.identity(), model=model)
    outputs = model.generate(request, context)
    if model.modality == "image":
        return [o.pixels for o in outputs]
    return pd.concat([o.frame for o in outputs], ignore_index=True)


def _stats(values: np.ndarray) -> dict[str, float]:
    values = values.astype(np.float64)
    stats = {"mean": float(values.mean())}
    stats.update({f"p{round(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES})
    return stats
