"""Table watermark on 500-row synthetic tables: detection rate, false positives, and SDMetrics quality change.

SDMetrics is a peer tool, not a gensdk dependency: run this in the benchmark environment described in
bench_watermark_image.py, plus `pip install sdmetrics` there:

    /tmp/wm-bench-venv/bin/pip install sdmetrics
    /tmp/wm-bench-venv/bin/python benchmarks/bench_watermark_table.py

A GMM (gensdk's table family, 10 components) is fitted on 5,000 rows of UCI Adult (gensdk.datasets). For each
of `--tables` seeds it samples a 500-row table, marks a copy with the `watermark-table` scheme and runs the
detector on both: TPR on the marked tables, FPR on the unmarked ones at the policy's threshold (p < 1e-3), and
the FPR of 2,000 random keys on one unmarked table (so the null is measured well below 1%). For `--quality`
tables it computes SDMetrics' single-table QualityReport score (column shapes and pair trends) of the synthetic
table against held-out real rows, with and without the mark. Also reported: the share of values changed and the
largest relative change.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "plugins", REPO / "policies"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

ALPHA = 1e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--quality", type=int, default=10)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()

    import torch

    from gensdk.datasets import load_adult
    from gensdk.request import GenerationContext, Request
    from gensdk_gmm.model import GMMFamily
    from gensdk_watermark.keys import WatermarkKey
    from gensdk_watermark.table import TableMark

    torch.set_num_threads(1)
    adult = load_adult().sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, holdout = adult.iloc[:5000], adult.iloc[5000:5000 + args.rows].reset_index(drop=True)
    started = time.perf_counter()
    model = GMMFamily({"n_components": 10, "max_iter": 100, "seed": 0}).fit(train)
    print(f"GMM fitted on {len(train)} Adult rows in {time.perf_counter() - started:.0f} s")
    mark = TableMark.from_key(WatermarkKey(bytes(range(32))), alpha=ALPHA)

    def sample(seed: int):
        request = Request(n=args.rows, seed=seed)
        context = GenerationContext(request=request, seed=seed, device="cpu", dtype="float32", modality="table", model_info={}, model=model)
        return model.generate(request, context)[0].frame

    tp, fp, changed, relative, cells, embed_ms, quality_pairs = [], [], [], [], [], [], []
    for seed in range(args.tables):
        synthetic = sample(seed)
        marked = synthetic.copy()
        t0 = time.perf_counter()
        info = mark.embed(marked)
        embed_ms.append((time.perf_counter() - t0) * 1000)
        tp.append(mark.detect(marked).detected)
        fp.append(mark.detect(synthetic).detected)
        numeric = info["columns"]
        diff = (marked[numeric] != synthetic[numeric]).to_numpy()
        changed.append(diff.mean())
        relative.append(info["max_relative_change"])
        cells.append(info["cells"])
        if seed < args.quality:
            quality_pairs.append((quality_score(holdout, synthetic), quality_score(holdout, marked)))
    rng = np.random.default_rng(0)
    table = sample(10_000)
    null_p = np.array([TableMark(int(rng.integers(0, 2**63))).detect(table).p_value for _ in range(2000)])

    print(f"\n{args.tables} synthetic tables of {args.rows} rows (GMM on UCI Adult), threshold p < {ALPHA:g}")
    print("| measure | value |")
    print("|---|---|")
    print(f"| TPR (marked tables detected) | {statistics.mean(tp):.3f} |")
    print(f"| FPR (unmarked tables, same key) | {statistics.mean(fp):.4f} |")
    print(f"| FPR (one unmarked table, 2,000 random keys) at p < {ALPHA:g} / 0.01 | {np.mean(null_p < ALPHA):.4f} / {np.mean(null_p < 0.01):.4f} |")
    print(f"| marked values per table (median) | {statistics.median(cells):.0f} |")
    print(f"| numeric values changed (mean share) | {statistics.mean(changed):.4f} |")
    print(f"| largest relative change of a value | {max(relative):.2e} |")
    print(f"| embed time per table (median ms) | {statistics.median(embed_ms):.1f} |")
    if quality_pairs:
        deltas = [abs(b - a) for a, b in quality_pairs]
        print(f"| SDMetrics quality, unmarked (mean of {len(quality_pairs)}) | {statistics.mean(a for a, _ in quality_pairs):.4f} |")
        print(f"| SDMetrics quality, marked (mean) | {statistics.mean(b for _, b in quality_pairs):.4f} |")
        print(f"| abs. quality change, mean / max | {statistics.mean(deltas):.5f} / {max(deltas):.5f} |")


def quality_score(real, synthetic) -> float:
    import pandas as pd
    from sdmetrics.reports.single_table import QualityReport

    metadata = {"columns": {c: {"sdtype": "numerical" if pd.api.types.is_numeric_dtype(real[c]) else "categorical"}
                            for c in real.columns}}
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real.astype({c: "object" for c in real.columns if not pd.api.types.is_numeric_dtype(real[c])}),
                        synthetic.astype({c: "object" for c in real.columns if not pd.api.types.is_numeric_dtype(real[c])}),
                        metadata, verbose=False)
    return float(report.get_score())


if __name__ == "__main__":
    main()
