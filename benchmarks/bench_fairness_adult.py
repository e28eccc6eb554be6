"""UCI Adult through gensdk's table families: does synthetic data keep the income gap by sex, and does
fairness-aware sampling bring it under the target?

    .venv/bin/python benchmarks/bench_fairness_adult.py [--families gmm,gan,vae] [--budget 90] [--components 10]
        [--max-difference 0.02] [--sensitive sex] [--out out/bench-fairness] [--threads 1]

Data: ../shared/data/adult.csv when present, else the copy in gensdk.datasets (30,162 rows); 80% of the rows
(seeded) train each model, and are the "real" side of the audit. For each family:

1. fit it (GMM: `--components`, EM to convergence; GAN / VAE: `--budget` seconds of training);
2. generate as many rows as the training set through an Engine (policies: none; audit trail in --out);
3. `audit_tables(real, synthetic)`: parity difference of real and synthetic rows with bootstrap intervals, the
   amplification, and the equalized odds of a classifier trained on synthetic vs on real rows (tested on real
   held-out rows); the HTML report goes to --out;
4. `fair_generate(...)` with `--max-difference`: the synthetic gap before and after, whether the target is met,
   and the fidelity cost (marginal TVD and association distance to the real rows, fair minus plain).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "policies"), str(ROOT / "plugins")]
SHARED_ADULT = ROOT.parent / "shared" / "data" / "adult.csv"


def load_real() -> Any:
    import pandas as pd

    from gensdk.datasets import load_adult

    return (pd.read_csv(SHARED_ADULT) if SHARED_ADULT.is_file() else load_adult()).reset_index(drop=True)


def build(family: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """(unfitted model, its plugin module)."""
    common = {"seed": 0, "license": "CC BY 4.0", "data_source": "UCI Adult"}
    if family == "gmm":
        import gensdk_gmm.plugin
        from gensdk_gmm import GMMFamily

        return GMMFamily({"n_components": args.components, **common}), gensdk_gmm.plugin
    roles = {"target": args.target, "sensitive": args.sensitive, "time_budget_s": args.budget, "epochs": 10_000}
    if family == "gan":
        import gensdk_gan.plugin
        from gensdk_gan import TableGANFamily

        return TableGANFamily({**roles, **common}), gensdk_gan.plugin
    import gensdk_vae.plugin
    from gensdk_vae import TableVAEFamily

    return TableVAEFamily({**roles, **common}), gensdk_vae.plugin


def run_family(name: str, train: Any, args: argparse.Namespace) -> dict[str, Any]:
    from gensdk.cli.progress import progress_bar
    from gensdk.testing import make_engine
    from gensdk_fairness import audit_tables, fair_generate, write_html

    model, plugin = build(name, args)
    started = time.perf_counter()
    with progress_bar(f"fit {name}") as progress:
        model.fit(train, progress=progress)
    fit_s = time.perf_counter() - started
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    with make_engine(out, plugins=[plugin]) as engine:
        synthetic = engine.generate(model, n=len(train), seed=1).raise_for_verdict().table()
        started = time.perf_counter()
        audit = audit_tables(train, synthetic, sensitive=args.sensitive, target=args.target, positive=args.positive,
                             seed=0, sources={"real": "UCI Adult, 80% split", "synthetic": f"{name} trained by gensdk"})
        audit_s = time.perf_counter() - started
        write_html(audit.to_dict(), out / "bias-report.html")
        started = time.perf_counter()
        fair = fair_generate(engine, model, len(train), sensitive=args.sensitive, target=args.target,
                             positive=args.positive, max_difference=args.max_difference, reference=train, seed=2)
        fair_s = time.perf_counter() - started
        fair.frame.to_csv(out / "fair-sample.csv", index=False)
        verified = engine.audit.verify().ok
    return {"family": name, "fit_s": fit_s, "audit_s": audit_s, "fair_s": fair_s, "audit": audit.to_dict(),
            "fair": fair.to_dict(), "trail_verifies": verified}


def show(results: list[dict[str, Any]], args: argparse.Namespace, rows: int) -> None:
    print(f"\nUCI Adult, {rows} training rows; parity of P({args.target} = {args.positive}) by {args.sensitive}; "
          f"target gap {args.max_difference}\n")
    print("| family | fit s | real gap [95% CI] | synthetic gap [95% CI] | amplification [95% CI] | EO diff, trained on real / synthetic | "
          "fair-sample gap | target met | cost: marginal TVD / association | fair sampling s |")
    print("|---|---:|---|---|---|---|---:|---|---|---:|")
    for r in results:
        p, eo, f = r["audit"]["parity"], r["audit"]["equalized_odds"], r["fair"]
        ci = lambda c: "n/a" if c is None else f"[{c[0]:.4f}, {c[1]:.4f}]"  # noqa: E731
        eo_text = (f"{eo['real']['eo_difference']:.4f} / {eo['synthetic']['eo_difference']:.4f} (accuracy "
                   f"{eo['real']['accuracy']:.3f} / {eo['synthetic']['accuracy']:.3f})") if eo and eo["real"] and eo["synthetic"] else "n/a"
        print(f"| {r['family']} | {r['fit_s']:.1f} | {p['real']['dp_difference']:.4f} {ci(p['real']['dp_difference_ci'])} | "
              f"{p['synthetic']['dp_difference']:.4f} {ci(p['synthetic']['dp_difference_ci'])} | "
              f"{p['amplification']:+.4f} {ci(p['amplification_ci'])} | {eo_text} | "
              f"{f['before']['dp_difference']:.4f} -> {f['after']['dp_difference']:.4f} | {'yes' if f['met'] else 'NO'} | "
              f"{f['quality']['cost']['marginal_tvd']:+.4f} / {f['quality']['cost']['association_distance']:+.4f} | {r['fair_s']:.1f} |")
    print(f"\nHTML reports: {args.out}/<family>/bias-report.html; audit trails verify: "
          f"{all(r['trail_verifies'] for r in results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="gmm,gan,vae")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds of training for the GAN and the VAE")
    parser.add_argument("--components", type=int, default=10, help="GMM mixture components")
    parser.add_argument("--max-difference", type=float, default=0.02, help="parity target of the fair sample")
    parser.add_argument("--sensitive", action="append", default=None, help="sensitive column (repeatable; default sex)")
    parser.add_argument("--target", default="income")
    parser.add_argument("--positive", default=">50K")
    parser.add_argument("--out", type=Path, default=Path("out/bench-fairness"))
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    args = parser.parse_args()
    args.sensitive = args.sensitive or ["sex"]

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    real = load_real()
    train = real.sample(frac=0.8, random_state=0).reset_index(drop=True)
    with threadpool_limits(limits=args.threads):
        results = [run_family(name, train, args) for name in args.families.split(",")]
    show(results, args, len(train))


if __name__ == "__main__":
    main()
