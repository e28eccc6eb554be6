"""Memorisation check: does it block a copying generator, pass trained ones, and how fast is it?

    .venv/bin/python benchmarks/bench_memorisation.py [--rows 100000] [--families gmm,gan,vae] [--epochs 20]
                                                      [--model-dir DIR] [--sdmetrics]

1. Each family trained on UCI Adult (30,162 rows, 10% held out: the GMM with --components, the table GAN and
   VAE for --epochs): share of its 100,000 generated rows that pass (the policy in 'drop' mode, through the engine).
2. A "generator" returning training rows plus 1% noise (Gaussian, 1% of each numeric column's deviation):
   share of its 100,000 rows flagged, and whether the engine blocks its table.
3. Time to check 100,000 generated rows against 30,000 training rows (the policy's search, and the full
   exact distance-to-closest-record computation for comparison), on the CPU unless --device says otherwise.

With --sdmetrics (run it with a Python that has SDMetrics >= 0.17, e.g. the benchmark venv of
bench_tabular_peers.py: `/tmp/sdv-venv/bin/python benchmarks/bench_memorisation.py --sdmetrics`), SDMetrics'
DCR metrics are computed beside [1] and [2] on the same rows (--sdmetrics-rows synthetic rows; held-out rows and
as many training rows): DCRBaselineProtection (synthetic rows' median DCR against that of uniformly random rows; 1 is
best) and DCROverfittingProtection (share of synthetic rows closer to the training rows than to the held-out
ones, mapped to a score; 1 is best).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "policies")]  # also from a venv without gensdk installed
FAMILIES = ("gmm", "gan", "vae")


def flagged_share(reference, frame, quantile: float, device: str) -> tuple[float, float]:
    """(share of rows flagged, seconds) the way the policy judges them."""
    started = time.perf_counter()
    threshold = reference.holdout_quantile(quantile)
    encoded = reference.encode(frame)
    dcr = reference.distances_to_closest(encoded, device=device, cap=max(threshold, 1e-2))
    flagged = (dcr < threshold) | reference.exact_copies(encoded, dcr)
    return float(flagged.mean()), time.perf_counter() - started


def train_or_load(family: str, adult, directory: Path, args):
    """The family's model on Adult: loaded from `directory` when saved there before, else trained and saved."""
    from gensdk_gan.family import TableGANFamily
    from gensdk_gmm.model import GMMFamily
    from gensdk_vae.family import TableVAEFamily

    cls = {"gmm": GMMFamily, "gan": TableGANFamily, "vae": TableVAEFamily}[family]
    if (directory / "gensdk_model.json").exists():
        print(f"{family}: loaded from {directory}")
        return cls.load(directory)
    options = {"n_components": args.components, "max_iter": args.max_iter} if family == "gmm" else {"epochs": args.epochs}
    started = time.perf_counter()
    model = cls(options).fit(adult)
    model.save(directory)
    print(f"{family}: trained in {time.perf_counter() - started:.0f} s ({options}), saved to {directory}")
    return model


def split_of(family: str, model, adult):
    """(training rows, held-out rows) as the family split them."""
    if family == "gmm":
        return model._split_holdout(adult)
    from gensdk.tabular_transform import split_holdout

    return split_holdout(adult, model.options.holdout_fraction, model.options.seed)


def engine_for(family: str, policies: list):
    import gensdk_gan.plugin
    import gensdk_gmm.plugin
    import gensdk_privacy.plugin
    import gensdk_vae.plugin
    from gensdk.testing import make_engine

    plugin = {"gmm": gensdk_gmm.plugin, "gan": gensdk_gan.plugin, "vae": gensdk_vae.plugin}[family]
    return make_engine(Path(tempfile.mkdtemp()), plugins=[gensdk_privacy.plugin, plugin], config={"policies": policies})


def pass_rate(family: str, model, args) -> tuple[int, int, str, float, float]:
    """Generated rows through the engine with the policy dropping flagged rows: (rows, flagged, verdict,
    seconds for generate + check, seconds of the policy)."""
    with engine_for(family, [{"id": "memorisation", "options": {"action": "drop", "quantile": args.quantile}}]) as engine:
        started = time.perf_counter()
        result = engine.generate(model, n=args.rows, seed=1)
        elapsed = time.perf_counter() - started
    details = [f.details for f in result.findings]
    policy_s = next(o.elapsed_ms for o in result.outcomes if o.policy_id == "memorisation") / 1000
    return sum(d["rows"] for d in details), sum(d["flagged"] for d in details), result.verdict.value, elapsed, policy_s


def raw_sample(family: str, model, rows: int):
    """The family's rows before any policy: what SDMetrics is shown."""
    with engine_for(family, []) as engine:
        return engine.generate(model, n=rows, seed=1).table()


def equal_size(training, holdout):
    """As many training rows as held-out ones (seeded): SDMetrics' overfitting metric compares closeness to two
    sets and assumes they are the same size (a larger training set would be closer by its size alone)."""
    return training.sample(len(holdout), random_state=0)


def sdmetrics_dcr(reference, training, holdout, synthetic, rows: int) -> str:
    """SDMetrics' two DCR metrics, on `rows` synthetic rows against equal-sized training and held-out rows.
    SDMetrics' own subsampling is not used: it would subsample the training rows too, and a copy of a training
    row left out of the sample would count as fresh."""
    from sdmetrics.single_table import DCRBaselineProtection, DCROverfittingProtection

    metadata = {"columns": {c.name: {"sdtype": "numerical" if c.numeric else "categorical"} for c in reference.schema.columns}}
    columns = list(metadata["columns"])
    synthetic = synthetic[columns].sample(min(rows, len(synthetic)), random_state=0)
    started = time.perf_counter()
    baseline = DCRBaselineProtection.compute_breakdown(training[columns], synthetic, metadata, None, None)
    overfit = DCROverfittingProtection.compute_breakdown(training[columns], synthetic, holdout[columns], metadata, None, None)
    shares = overfit["synthetic_data_percentages"]
    return (f"SDMetrics on {len(synthetic):,} rows: DCRBaselineProtection {baseline['score']:.3f} (median DCR synthetic "
            f"{baseline['median_DCR_to_real_data']['synthetic_data']:.4f}, random {baseline['median_DCR_to_real_data']['random_data_baseline']:.4f}); "
            f"DCROverfittingProtection {overfit['score']:.3f} (closer to training {shares['closer_to_training']:.3f}, "
            f"to held-out {shares['closer_to_holdout']:.3f}) [{time.perf_counter() - started:.0f} s]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--families", default="gmm", help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20, help="table GAN and VAE")
    parser.add_argument("--quantile", type=float, default=0.05)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-dir", type=Path, help="reuse (or write) the trained models here (one folder per family)")
    parser.add_argument("--sdmetrics", action="store_true", help="SDMetrics' DCR metrics beside ours")
    parser.add_argument("--sdmetrics-rows", type=int, default=1000, help="synthetic rows shown to SDMetrics (its search is slow)")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if unknown := set(families) - set(FAMILIES):
        parser.error(f"unknown families {sorted(unknown)}; choose from {', '.join(FAMILIES)}")

    from gensdk.datasets import load_adult
    from gensdk.reference import TrainingReference, nearest_distances
    from gensdk.tabular import TableSchema

    adult = load_adult()
    root = args.model_dir or Path(tempfile.mkdtemp())
    models = {}
    for family in families:
        # the GMM's folder keeps its old name: --model-dir DIR used to be the GMM's own folder
        directory = root if family == "gmm" and (root / "gensdk_model.json").exists() else root / f"adult-{family}"
        models[family] = model = train_or_load(family, adult, directory, args)
        reference = model.training_reference()
        print(f"    reference: {len(reference.training)} training rows, {len(reference.holdout)} held out; "
              f"threshold (held-out DCR q={args.quantile}) {reference.holdout_quantile(args.quantile):.4f}")

    # 1. properly trained generators, through the engine with the policy in 'drop' mode
    for family, model in models.items():
        rows, flagged, verdict, elapsed, policy_s = pass_rate(family, model, args)
        print(f"[1] {family}: {rows - flagged:,} of {rows:,} rows pass ({(rows - flagged) / rows:.2%}); verdict {verdict}; "
              f"generate+check {elapsed:.1f} s, of which the policy {policy_s:.1f} s")
        if args.sdmetrics:
            training, holdout = split_of(family, model, adult)
            synthetic = raw_sample(family, model, args.rows)
            print(f"    {sdmetrics_dcr(model.training_reference(), equal_size(training, holdout), holdout, synthetic, args.sdmetrics_rows)}")

    # 2. training rows plus 1% noise, judged against the first family's reference
    family, model = next(iter(models.items()))
    reference = model.training_reference()
    train_rows, holdout_rows = split_of(family, model, adult)
    rng = np.random.default_rng(0)
    copies = train_rows.iloc[rng.integers(0, len(train_rows), args.rows)].reset_index(drop=True)
    numeric = [c.name for c in reference.schema.columns if c.numeric]
    copies[numeric] = copies[numeric] + rng.normal(0, 1, (len(copies), len(numeric))) * (0.01 * train_rows[numeric].std().to_numpy())
    share, seconds = flagged_share(reference, copies, args.quantile, args.device)
    exact, _ = flagged_share(reference, train_rows.iloc[rng.integers(0, len(train_rows), 10_000)], args.quantile, args.device)
    print(f"[2] training rows + 1% noise ({family}'s reference): {share:.2%} of {args.rows:,} rows flagged ({seconds:.1f} s); "
          f"exact copies: {exact:.2%} of 10,000 flagged")
    with engine_for(family, [{"id": "memorisation", "options": {"quantile": args.quantile}}]) as engine:
        blocked = engine.generate(_Replay(copies, model), n=args.rows, seed=1)
    print(f"    through the engine (action 'replace'): verdict {blocked.verdict.value}, {len(blocked.outputs)} tables released")
    if args.sdmetrics:  # copies of the rows SDMetrics is shown as training rows, with the same noise
        shown = equal_size(train_rows, holdout_rows)
        noisy = shown.iloc[rng.integers(0, len(shown), args.sdmetrics_rows)].reset_index(drop=True)
        noisy[numeric] = noisy[numeric] + rng.normal(0, 1, (len(noisy), len(numeric))) * (0.01 * train_rows[numeric].std().to_numpy())
        print(f"    {sdmetrics_dcr(reference, shown, holdout_rows, noisy, args.sdmetrics_rows)}")

    # 3. timing: 100,000 rows against a 30,000-row reference
    schema = TableSchema.infer(adult)
    big = TrainingReference.build(schema, adult.iloc[:30_000], adult.iloc[30_000:])
    generated = raw_sample(family, model, args.rows).iloc[: args.rows]
    share, seconds = flagged_share(big, generated, args.quantile, args.device)
    print(f"[3] {len(generated):,} generated rows vs {len(big.training):,} training rows: policy check {seconds:.2f} s "
          f"({share:.2%} flagged against this reference)")
    started = time.perf_counter()
    nearest_distances(big.encode(generated), big._on(args.device))
    print(f"    full exact DCR of every row (brute force matrix products, {big.width} features): {time.perf_counter() - started:.1f} s")


class _Replay:
    """Wraps a ready-made frame as a table family: the 'generator' that memorised its training rows."""

    def __new__(cls, frame, model):
        from gensdk.outputs import TableOutput
        from gensdk.testing import InMemoryFamily

        class Replay(InMemoryFamily):
            id = "replay-rows"
            modality = "table"
            default_batch_size = 10**7

            def _generate(self, request, params, context):
                return [TableOutput(frame.iloc[: request.n].copy())]

        return Replay(model.training_reference())


if __name__ == "__main__":
    main()
