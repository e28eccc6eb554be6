"""The gensdk demo: train on bundled data, generate through every policy, audit, and show tampering caught.

    make demo            # or: .venv/bin/python examples/demo.py [--out out/demo]

Everything runs offline on the CPU in a couple of minutes. Each model family that gensdk ships gets a step;
every installed policy that applies to the step's modality is enabled.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import gensdk
from gensdk.cli.progress import progress_bar
from gensdk.datasets import load_adult
from gensdk.plugins import get_plugin_host

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="Output directory (recreated).")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    audit = args.out / "audit.db"
    started = time.perf_counter()
    summary: list[tuple[str, str]] = []
    summary += tables_step(args.out, audit)
    summary += fail_closed_step(args.out, audit)
    summary += audit_step(args.out, audit)
    show_summary(summary, time.perf_counter() - started)


def policies_for(modality: str, overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every installed policy that applies to `modality`, with demo options where a policy needs some."""
    overrides = overrides or {}
    host = get_plugin_host()
    return [
        {"id": reg.id, **overrides.get(reg.id, {})}
        for reg in host.policies
        if modality in reg.component.modalities
    ]


def tables_step(out: Path, audit: Path) -> list[tuple[str, str]]:
    console.rule("[bold]Tables: a Gaussian mixture trained on UCI Adult")
    from gensdk_gmm import GMMFamily

    real = load_adult()
    model = GMMFamily({"n_components": 12, "seed": 0, "license": "CC BY 4.0", "data_source": "UCI Adult (bundled)"})
    with progress_bar("EM on 30,162 rows") as progress:
        model.fit(real, progress=progress)
    model_dir = model.save(out / "models" / "adult-gmm")
    config = {"policies": policies_for("table"), "device": "auto"}
    console.print(f"policies enabled for tables: {[p['id'] for p in config['policies']] or 'none installed'}")
    with gensdk.Engine(config, audit=str(audit)) as engine:
        synthetic = engine.generate(str(model_dir), n=5000, seed=1)
        rich_rows = engine.generate(str(model_dir), n=1000, seed=2, conditions={"income": ">50K"})
    show_generation("synthetic rows", synthetic)
    show_generation("augmentation (income >50K)", rich_rows)
    if synthetic.outputs:
        compare_marginals(real, synthetic.table())
        synthetic.table().to_csv(out / "adult-synthetic.csv", index=False)
    return [
        ("GMM trained", f"{len(real)} rows, {model.metadata['em_iterations']} EM iterations"),
        ("table outputs", f"verdict {synthetic.verdict.value}, {sum(len(o.frame) for o in synthetic.outputs)} rows released"),
        ("augmentation", f"{sum(len(o.frame) for o in rich_rows.outputs)} rows of income >50K"),
    ]


def fail_closed_step(out: Path, audit: Path) -> list[tuple[str, str]]:
    console.rule("[bold]Fail closed: a policy that crashes blocks the output")
    from gensdk.testing import RaisingPolicy

    crashing = RaisingPolicy({"message": "simulated policy crash"})
    with gensdk.Engine(audit=str(audit), policies=[crashing]) as engine:
        result = engine.generate(str(out / "models" / "adult-gmm"), n=10, seed=3)
    outcome = result.outcomes[0]
    console.print(f"verdict [red]{result.verdict.value}[/red], {len(result.outputs)} outputs released; "
                  f"recorded: {outcome.status}: {outcome.error}")
    return [("fail closed", f"crashing policy -> verdict {result.verdict.value}, {len(result.outputs)} released")]


def audit_step(out: Path, audit: Path) -> list[tuple[str, str]]:
    console.rule("[bold]Audit trail: verify, then tamper with a copy")
    from gensdk.audit import open_audit_sink

    with open_audit_sink(str(audit)) as sink:
        report = sink.verify()
    console.print(f"{audit}: {report.records} records, {report.checkpoints} signed checkpoints, ok={report.ok}")
    tampered = out / "audit-tampered.db"
    shutil.copy(audit, tampered)
    if Path(str(audit) + ".key").exists():  # the signing key appears with the first checkpoint
        shutil.copy(str(audit) + ".key", str(tampered) + ".key")
    edit_first_record(tampered)
    with open_audit_sink(str(tampered)) as sink:
        bad = sink.verify()
    console.print(f"tampered copy: ok={bad.ok}: [red]{bad.problem}[/red]")
    return [
        ("audit trail", f"{report.records} records verify: {report.ok}"),
        ("tampering", f"edited record detected at seq {bad.first_bad_seq}"),
    ]


def edit_first_record(path: Path) -> None:
    """What an attacker with write access would do: drop the append-only triggers and rewrite a verdict."""
    with sqlite3.connect(path) as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute("UPDATE records SET body = replace(body, '\"verdict\":\"pass\"', '\"verdict\":\"warn\"') WHERE seq = 1")


def show_generation(label: str, result: gensdk.Result) -> None:
    colour = "green" if result.verdict.releases else "red"
    console.print(f"{label}: verdict [{colour}]{result.verdict.value}[/{colour}], "
                  f"{len(result.outputs)}/{len(result.output_verdicts)} outputs released, "
                  f"audit record {result.audit_record_id[:12]}")
    for outcome in result.outcomes:
        console.print(f"  {outcome.policy_id}: {outcome.status} ({len(outcome.findings)} findings)")


def compare_marginals(real: Any, synthetic: Any) -> None:
    table = Table("column", "real", "synthetic")
    table.add_row("mean age", f"{real.age.mean():.1f}", f"{synthetic.age.mean():.1f}")
    table.add_row("mean hours/week", f"{real.hr_per_week.mean():.1f}", f"{synthetic.hr_per_week.mean():.1f}")
    for column, value in (("sex", "Female"), ("income", ">50K"), ("race", "White")):
        table.add_row(f"share {column}={value}", f"{(real[column] == value).mean():.3f}",
                      f"{(synthetic[column] == value).mean():.3f}")
    console.print(table)


def show_summary(rows: list[tuple[str, str]], seconds: float) -> None:
    console.rule("[bold]Summary")
    table = Table("step", "result")
    for step, result in rows:
        table.add_row(step, result)
    console.print(table)
    console.print(f"demo finished in {seconds:.0f} s")


if __name__ == "__main__":
    main()
