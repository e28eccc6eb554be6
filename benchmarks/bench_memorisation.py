"""Memorisation check: does it block a copying generator, pass a trained one, and how fast is it?

    .venv/bin/python benchmarks/bench_memorisation.py [--rows 100000] [--components 10] [--model-dir DIR]

1. A GMM trained on UCI Adult (30,162 rows, 10% held out): share of 100,000 generated rows that pass.
2. A "generator" returning training rows plus 1% noise (Gaussian, 1% of each numeric column's deviation):
   share of its 100,000 rows flagged, and whether the engine blocks its table.
3. Time to check 100,000 generated rows against 30,000 training rows (the policy's search, and the full
   exact distance-to-closest-record computation for comparison), on the CPU unless --device says otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "policies"))


def flagged_share(reference, frame, quantile: float, device: str) -> tuple[float, float]:
    """(share of rows flagged, seconds) the way the policy judges them."""
    started = time.perf_counter()
    threshold = reference.holdout_quantile(quantile)
    encoded = reference.encode(frame)
    dcr = reference.distances_to_closest(encoded, device=device, cap=max(threshold, 1e-2))
    flagged = (dcr < threshold) | reference.exact_copies(encoded, dcr)
    return float(flagged.mean()), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--quantile", type=float, default=0.05)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-dir", type=Path, help="reuse (or write) the trained GMM here")
    args = parser.parse_args()

    import gensdk_gmm.plugin
    import gensdk_privacy.plugin
    from gensdk.datasets import load_adult
    from gensdk.reference import TrainingReference, nearest_distances
    from gensdk.tabular import TableSchema
    from gensdk.testing import make_engine
    from gensdk_gmm.model import GMMFamily

    adult = load_adult()
    model_dir = args.model_dir or Path(tempfile.mkdtemp()) / "adult-gmm"
    if (model_dir / "model.safetensors").exists():
        model = GMMFamily.load(model_dir)
        print(f"GMM loaded from {model_dir}")
    else:
        started = time.perf_counter()
        model = GMMFamily({"n_components": args.components, "max_iter": args.max_iter}).fit(adult)
        model.save(model_dir)
        print(f"GMM fitted in {time.perf_counter() - started:.0f} s ({model.metadata['em_iterations']} EM iterations), saved to {model_dir}")
    reference = model.training_reference()
    print(f"reference: {len(reference.training)} training rows, {len(reference.holdout)} held out; "
          f"threshold (held-out DCR q={args.quantile}) {reference.holdout_quantile(args.quantile):.4f}")

    # 1. a properly trained generator, through the engine with the policy in 'drop' mode
    with make_engine(Path(tempfile.mkdtemp()), plugins=[gensdk_privacy.plugin, gensdk_gmm.plugin],
                     config={"policies": [{"id": "memorisation", "options": {"action": "drop", "quantile": args.quantile}}]}) as engine:
        started = time.perf_counter()
        result = engine.generate(model, n=args.rows, seed=1)
        elapsed = time.perf_counter() - started
    details = [f.details for f in result.findings]
    rows, flagged = sum(d["rows"] for d in details), sum(d["flagged"] for d in details)
    policy_ms = next(o.elapsed_ms for o in result.outcomes if o.policy_id == "memorisation")
    print(f"[1] GMM: {rows - flagged:,} of {rows:,} rows pass ({(rows - flagged) / rows:.2%}); verdict {result.verdict.value}; "
          f"generate+check {elapsed:.1f} s, of which the policy {policy_ms / 1000:.1f} s")

    # 2. training rows plus 1% noise
    train_rows = model._split_holdout(adult)[0]
    rng = np.random.default_rng(0)
    copies = train_rows.iloc[rng.integers(0, len(train_rows), args.rows)].reset_index(drop=True)
    numeric = [c.name for c in reference.schema.columns if c.numeric]
    copies[numeric] = copies[numeric] + rng.normal(0, 1, (len(copies), len(numeric))) * (0.01 * train_rows[numeric].std().to_numpy())
    share, seconds = flagged_share(reference, copies, args.quantile, args.device)
    exact, _ = flagged_share(reference, train_rows.iloc[rng.integers(0, len(train_rows), 10_000)], args.quantile, args.device)
    print(f"[2] training rows + 1% noise: {share:.2%} of {args.rows:,} rows flagged ({seconds:.1f} s); "
          f"exact copies: {exact:.2%} of 10,000 flagged")
    with make_engine(Path(tempfile.mkdtemp()), plugins=[gensdk_privacy.plugin, gensdk_gmm.plugin],
                     config={"policies": [{"id": "memorisation", "options": {"quantile": args.quantile}}]}) as engine:
        blocked = engine.generate(_Replay(copies, model), n=args.rows, seed=1)
    print(f"    through the engine (action 'replace'): verdict {blocked.verdict.value}, {len(blocked.outputs)} tables released")

    # 3. timing: 100,000 rows against a 30,000-row reference
    schema = TableSchema.infer(adult)
    big = TrainingReference.build(schema, adult.iloc[:30_000], adult.iloc[30_000:])
    generated = result.table() if len(result.table()) >= args.rows else model.generate(
        *_request(model, args.rows))[0].frame
    generated = generated.iloc[: args.rows]
    share, seconds = flagged_share(big, generated, args.quantile, args.device)
    print(f"[3] {len(generated):,} generated rows vs {len(big.training):,} training rows: policy check {seconds:.2f} s "
          f"({share:.2%} flagged against this reference)")
    started = time.perf_counter()
    nearest_distances(big.encode(generated), big._on(args.device))
    print(f"    full exact DCR of every row (brute force matrix products, {big.width} features): {time.perf_counter() - started:.1f} s")


class _Replay:
    """Wraps a ready-made frame as a table family: the 'generator' that memorised its training rows."""

    def __new__(cls, frame, model):
        from gensdk.family import ModelFamily
        from gensdk.outputs import TableOutput

        class Replay(ModelFamily):
            id = "replay-rows"
            modality = "table"
            default_batch_size = 10**7

            def _generate(self, request, params, context):
                return [TableOutput(frame.iloc[: request.n].copy())]

            def training_reference(self):
                return model.training_reference()

            def save(self, path):
                raise NotImplementedError

            @classmethod
            def load(cls, path):
                raise NotImplementedError

        return Replay()


def _request(model, n):
    from gensdk.request import GenerationContext, Request

    request = Request(n=n, seed=2)
    return request, GenerationContext(request=request, seed=2, device="cpu", dtype="float32", modality="table", model_info={}, model=model)


if __name__ == "__main__":
    main()
