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

import numpy as np
from rich.console import Console
from rich.table import Table

import gensdk
from gensdk.cli.progress import progress_bar
from gensdk.datasets import load_adult
from gensdk.plugins import get_plugin_host

# The diffusion and fairness steps live beside this file (each also runs on its own).
from demo_diffusion import diffusion_step  # noqa: E402
from demo_fairness import fairness_step  # noqa: E402
from demo_show import show_generation  # noqa: E402

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
    keys = make_keys(args.out)
    summary += tables_step(args.out, audit, keys)
    summary += text_step(args.out, audit, keys)
    summary += neural_tables_step(args.out, audit, keys)
    summary += images_step(args.out, audit, keys)
    summary += diffusion_step(args.out, audit, lambda modality: policies_for(modality, keys))
    summary += fairness_step(args.out, audit, lambda modality: policies_for(modality, keys))
    summary += fail_closed_step(args.out, audit)
    summary += audit_step(args.out, audit)
    show_summary(summary, time.perf_counter() - started)


def make_keys(out: Path) -> dict[str, dict[str, Any]]:
    """Watermark keys are never built in: the demo creates one locally, as a user would."""
    try:
        from gensdk_watermark.keys import create_key_file
    except ImportError:
        return {}
    key_file = out / "keys" / "watermark.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    create_key_file(key_file)
    keys = {wid: {"options": {"key_file": str(key_file)}} for wid in ("watermark-text", "watermark-image", "watermark-table")}
    keys["provenance"] = {"options": {"key_file": str(out / "keys" / "provenance.key"), "create_key": True}}
    # The image bias audit needs an attribute classifier: the digit itself, for the digit-generating steps.
    keys["fairness-image"] = {"on_fail": "warn", "options": {"classifier": "gensdk_diffusion.evaluate:DigitAttribute"}}
    # The windowed table audit watches the income gap by sex in everything generated from UCI Adult.
    keys["fairness-table"] = {"on_fail": "warn", "options": {"sensitive": ["sex"], "target": "income", "positive": ">50K"}}
    return keys


def policies_for(modality: str, overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every installed policy that applies to `modality`, with demo options where a policy needs some."""
    overrides = overrides or {}
    host = get_plugin_host()
    return [
        {"id": reg.id, **overrides.get(reg.id, {})}
        for reg in host.policies
        if modality in reg.component.modalities
    ]


def tables_step(out: Path, audit: Path, keys: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    console.rule("[bold]Tables: a Gaussian mixture trained on UCI Adult")
    from gensdk_gmm import GMMFamily

    real = load_adult()
    model = GMMFamily({"n_components": 12, "seed": 0, "license": "CC BY 4.0", "data_source": "UCI Adult (bundled)"})
    with progress_bar("EM on 30,162 rows") as progress:
        model.fit(real, progress=progress)
    model_dir = model.save(out / "models" / "adult-gmm")
    config = {"policies": policies_for("table", keys), "device": "auto"}
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


def text_step(out: Path, audit: Path, keys: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    console.rule("[bold]Text: a small GPT-2 trained here on TinyShakespeare")
    from gensdk.datasets import load_tinyshakespeare
    from gensdk_llm.model import LLMFamily

    corpus = out / "tinyshakespeare.txt"
    corpus.write_text(load_tinyshakespeare(), encoding="utf-8")
    options = {"minutes": 1.5, "license": "public domain", "data_source": "TinyShakespeare (bundled)"}
    model = LLMFamily(train_options=options)
    with progress_bar("GPT-2, 90 s budget") as progress:
        model.fit(corpus, progress=progress)
    model_dir = model.save(out / "models" / "shakespeare-llm")
    trained = model.metadata["training"]
    config = {"policies": policies_for("text", keys)}
    console.print(f"policies enabled for text: {[p['id'] for p in config['policies']]}")
    params = {"max_new_tokens": 60, "temperature": 0.8}
    leaky_prompt = "Write to me at juliet.capulet@verona.example or call +44 20 7946 0958."
    with gensdk.Engine(config, audit=str(audit)) as engine:
        result = engine.generate(str(model_dir), prompts=["ROMEO:", "KING RICHARD:"], seed=1, params=params)
        leaky = engine.generate(str(model_dir), prompts=[leaky_prompt], seed=1, params=params)
        streamed = "".join(engine.stream(str(model_dir), prompts=["JULIET:"], seed=2, params=params))
    show_generation("two prompts", result)
    for output in result.outputs:
        console.print(f"  [dim]{output.prompt[:40]!r}[/dim] -> {output.text[:160]!r}")
    show_generation("a prompt carrying an e-mail address and a phone number", leaky)
    console.print(f"streamed (released through the look-back buffer): {streamed[:160]!r}")
    return [
        ("LLM trained", f"{trained['steps']} steps, held-out perplexity {trained['heldout_perplexity_before']:.0f} "
                        f"-> {trained['heldout_perplexity_after']:.0f}"),
        ("text outputs", f"verdict {result.verdict.value}, {len(result.outputs)} released, "
                         f"{sum(len(o.findings) for o in result.outcomes)} findings"),
        ("PII in a prompt", f"verdict {leaky.verdict.value}: nothing generated"),
        ("streamed text", f"{len(streamed)} characters released after the policies saw them"),
    ]


def neural_tables_step(out: Path, audit: Path, keys: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    console.rule("[bold]Tables: GAN and VAE, augmentation, imputation, anomaly scores")
    from gensdk_gan import TableGANFamily
    from gensdk_vae import TableVAEFamily

    real = load_adult().sample(8000, random_state=0).reset_index(drop=True)
    common = {"seed": 0, "license": "CC BY 4.0", "data_source": "UCI Adult (bundled)"}
    gan = TableGANFamily({"epochs": 4, **common})
    vae = TableVAEFamily({"epochs": 8, **common})
    for name, model in (("table GAN", gan), ("table VAE", vae)):
        with progress_bar(f"{name} on 8,000 rows") as progress:
            model.fit(real, progress=progress)
    config = {"policies": policies_for("table", keys)}
    rows = []
    with gensdk.Engine(config, audit=str(audit)) as engine:
        for name, model in (("gan-table", gan), ("vae-table", vae)):
            result = engine.generate(model, n=1000, seed=4, conditions={"income": ">50K"})
            show_generation(f"{name}, 1,000 rows of income >50K", result)
            rows.append((name, f"verdict {result.verdict.value}, {sum(len(o.frame) for o in result.outputs)} rows"))
    holes = real.head(200).copy()
    holes.loc[::3, "age"] = None
    filled = vae.impute(holes)
    scores = vae.anomaly_scores(real.head(500))
    console.print(f"imputed {holes['age'].isna().sum()} missing ages (mean {filled.loc[::3, 'age'].mean():.1f}); "
                  f"anomaly scores of 500 rows: median {float(np.median(scores)):.1f}, max {float(scores.max()):.1f}")
    return rows + [("VAE imputation", f"{int(holes['age'].isna().sum())} missing ages filled")]


def images_step(out: Path, audit: Path, keys: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    console.rule("[bold]Images: class-conditional GAN and VAE on handwritten digits")
    from gensdk.images import load_digits
    from gensdk_gan import ImageGANFamily
    from gensdk_vae import ImageVAEFamily

    digits = load_digits()
    config = {"policies": policies_for("image", keys)}
    console.print(f"policies enabled for images: {[p['id'] for p in config['policies']] or 'none installed'}")
    rows = []
    for family, budget in ((ImageGANFamily, 40), (ImageVAEFamily, 25)):
        model = family({"time_budget_s": budget, "seed": 0, "license": "BSD-3-Clause (scikit-learn digits)"})
        with progress_bar(f"{family.id}, {budget} s budget") as progress:
            model.fit(digits, progress=progress)
        with gensdk.Engine(config, audit=str(audit)) as engine:
            marked = engine.generate(model, n=16, seed=5, conditions={"class": "7"})
        show_generation(f"{family.id}, 16 sevens, every image policy", marked)
        for outcome in marked.outcomes:
            if outcome.error:  # 8x8 digits cannot carry a 32-bit mark: fail closed, never a silent skip
                console.print(f"  [yellow]{outcome.policy_id}[/yellow]: {outcome.error[:140]}")
        unmarked = {"policies": [p for p in config["policies"] if p["id"] != "watermark-image"]}
        with gensdk.Engine(unmarked, audit=str(audit)) as engine:
            result = engine.generate(model, n=16, seed=5, conditions={"class": "7"})
        written, verified = write_with_provenance(result.outputs, out / "images" / family.id)
        show_generation(f"{family.id}, 16 sevens, without the image watermark", result)
        rows.append((family.id, f"with watermark: {marked.verdict.value} (too small); without: "
                                f"{result.verdict.value}, {len(written)} PNGs, {verified} manifests verify"))
    return rows


def write_with_provenance(outputs: list[Any], directory: Path) -> tuple[list[Path], int]:
    """PNGs written by the installed writers (with their signed provenance manifests embedded when the
    provenance plugin is there), then checked as a compliance reader would."""
    written = gensdk.write_outputs(outputs, directory)
    try:
        from gensdk_provenance import verify_file
    except ImportError:
        return written, 0
    return written, sum(verify_file(path).ok for path in written)


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
