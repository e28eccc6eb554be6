"""The fairness step of the gensdk demo: does a GMM trained on UCI Adult keep the income gap by sex, and can
fairness-aware sampling close it?

    .venv/bin/python examples/demo_fairness.py [--out out/demo-fairness]     # alone
    summary += fairness_step(out, audit, policies_for)                        # from examples/demo.py

About 30 s on two CPU cores: a Gaussian mixture on 8,000 rows of Adult, 8,000 synthetic rows through the
engine with every table policy and the windowed bias policy `fairness-table`, an audit of real vs synthetic
(parity gap, equalized odds of classifiers, bootstrap intervals) written as an HTML report, and a fair sample
whose gap is under 0.02.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

import gensdk
from gensdk.cli.progress import progress_bar
from gensdk.datasets import load_adult

console = Console()

# Fewer columns than the full table (no country, no education text beside its number): EM fits in seconds.
# fnlwgt stays: the table watermark needs a column of many distinct numbers to carry its mark.
COLUMNS = ["age", "type_employer", "fnlwgt", "education_num", "marital", "occupation", "relationship", "race", "sex",
           "hr_per_week", "income"]
ROWS = 8_000
TARGET_GAP = 0.02
WINDOW = {"sensitive": ["sex"], "target": "income", "positive": ">50K", "window": 5000, "bootstrap": 300}


def fairness_step(out: Path, audit: Path, policies_for: Callable[[str], list[dict[str, Any]]]) -> list[tuple[str, str]]:
    console.rule("[bold]Fairness: the income gap by sex, real vs synthetic, and a fair sample")
    from threadpoolctl import threadpool_limits

    from gensdk_fairness import audit_tables, fair_generate, write_html
    from gensdk_gmm import GMMFamily

    real = load_adult()[COLUMNS].sample(ROWS, random_state=0).reset_index(drop=True)
    model = GMMFamily({"n_components": 5, "max_iter": 40, "seed": 0, "license": "CC BY 4.0", "data_source": "UCI Adult (bundled)"})
    # One BLAS thread: the matrices are small (about 50 wide), and on two shared cores more threads only contend.
    with progress_bar(f"EM on {ROWS:,} rows") as progress, threadpool_limits(limits=1):
        model.fit(real, progress=progress)
    config = {"policies": _with_window(policies_for("table"))}
    console.print(f"policies enabled: {[p['id'] for p in config['policies']]}")
    with gensdk.Engine(config, audit=str(audit)) as engine:
        synthetic = engine.generate(model, n=ROWS, seed=1).raise_for_verdict().table()
        result = audit_tables(real, synthetic, sensitive="sex", target="income", positive=">50K", n_boot=500,
                              sources={"real": f"UCI Adult, {ROWS} rows", "synthetic": "GMM, 5 components"})
        report = write_html(result.to_dict(), out / "fairness" / "bias-report.html")
        fair = fair_generate(engine, model, ROWS, sensitive="sex", target="income", positive=">50K",
                             max_difference=TARGET_GAP, reference=real, seed=2)
        windows = [r for r in engine.audit.records() if r["body"].get("kind") == "bias-window"]
    fair.frame.to_csv(out / "fairness" / "fair-sample.csv", index=False)
    return _show(result, fair, report, len(windows))


def _with_window(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The demo's policies, with the windowed bias policy told what to audit (and to warn, not block)."""
    others = [c for c in configs if c["id"] != "fairness-table"]
    return [*others, {"id": "fairness-table", "on_fail": "warn", "options": WINDOW}]


def _show(result: Any, fair: Any, report: Path, windows: int) -> list[tuple[str, str]]:
    parity, eo = result.parity, result.equalized_odds
    ci = lambda c: "" if c is None else f" [{c[0]:.3f}, {c[1]:.3f}]"  # noqa: E731
    console.print(f"P(income >50K | sex): real {_rates(result.selection_rates['real'])}; "
                  f"synthetic {_rates(result.selection_rates['synthetic'])}")
    console.print(f"parity gap: real {parity['real']['dp_difference']:.3f}{ci(parity['real']['dp_difference_ci'])}, "
                  f"synthetic {parity['synthetic']['dp_difference']:.3f}{ci(parity['synthetic']['dp_difference_ci'])} "
                  f"-> {parity['trend']}; audit verdict {result.verdict}")
    if eo and eo["real"] and eo["synthetic"]:
        console.print(f"equalized-odds difference of a classifier trained on real rows {eo['real']['eo_difference']:.3f}, "
                      f"on synthetic rows {eo['synthetic']['eo_difference']:.3f}")
    console.print(f"fair sample: gap {fair.before['dp_difference']:.3f} -> {fair.after['dp_difference']:.3f} "
                  f"(target {TARGET_GAP}, {'met' if fair.met else 'NOT met'}); cost: marginal TVD "
                  f"{fair.quality['cost']['marginal_tvd']:+.4f}, association {fair.quality['cost']['association_distance']:+.4f}")
    console.print(f"[green]written[/green] {report}")
    return [
        ("income gap by sex", f"real {parity['real']['dp_difference']:.3f}, synthetic {parity['synthetic']['dp_difference']:.3f} "
                              f"({parity['trend']}); verdict {result.verdict}"),
        ("fair sampling", f"gap {fair.before['dp_difference']:.3f} -> {fair.after['dp_difference']:.3f}, target {TARGET_GAP} "
                          f"{'met' if fair.met else 'NOT met'}"),
        ("bias windows", f"{windows} window(s) of {WINDOW['window']:,} rows audited into the trail; report {report.name}"),
    ]


def _rates(by_group: dict[str, Any]) -> str:
    return ", ".join(f"{g} {v['selection_rate']:.3f}" for g, v in by_group.items())


def main() -> None:
    from demo import make_keys, policies_for  # examples/demo.py, beside this file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo-fairness"), help="Output directory (recreated).")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    keys = make_keys(args.out)  # the table watermark and provenance policies need keys, as in the full demo
    rows = fairness_step(args.out, args.out / "audit.db", lambda modality: policies_for(modality, keys))
    for name, value in rows:
        console.print(f"[bold]{name}[/bold]: {value}")


if __name__ == "__main__":
    main()
