"""Diffusion step of the gensdk demo: train a small class-conditional DDPM on handwritten digits, generate through
every image policy, write PNGs with signed provenance, and judge the digits with a classifier of real ones.

    .venv/bin/python examples/demo_diffusion.py [--out out/demo-diffusion] [--budget 60]

`examples/demo.py` calls `diffusion_step(out, audit, policies_for)`; run alone, this file makes its own keys
the way demo.py does.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Callable

import gensdk
from gensdk.cli.progress import progress_bar

from demo_show import console, show_generation  # noqa: E402  (examples/ is on sys.path when a demo runs)

TRAINING = {"class_conditional": True, "size": 16, "epochs": 100_000, "seed": 0,
            "license": "BSD-3-Clause (scikit-learn's copy of the UCI handwritten digits)",
            "data_source": "scikit-learn load_digits, upscaled from 8x8 to 16x16"}
SEVENS = {"n": 16, "seed": 5, "conditions": {"class": "7"}}
# An attribute classifier of 16x16 digits for gensdk_fairness's fairness-image policy.
FAIRNESS_CLASSIFIER = "gensdk_diffusion.evaluate:DigitAttribute"


def diffusion_step(out: Path, audit: Path, policies_for: Callable[[str], list[dict[str, Any]]],
                   budget_s: float = 60.0) -> list[tuple[str, str]]:
    console.rule("[bold]Images: a class-conditional diffusion model (DDPM) trained on handwritten digits")
    model = train(out, budget_s)
    config = {"policies": policies_for("image")}
    console.print(f"policies enabled for images: {[p['id'] for p in config['policies']] or 'none installed'}")
    with gensdk.Engine(config, audit=str(audit)) as engine:
        marked = engine.generate(str(out / "models" / "digits-ddpm"), SEVENS)
    show_generation("16 sevens, every image policy", marked)
    rows = [("diffusion trained", describe_training(model))]
    without = [p for p in config["policies"] if p["id"] != "watermark-image"]
    if marked.verdict.releases or len(without) == len(config["policies"]):
        released, label = marked, "every image policy"
    else:
        for outcome in marked.outcomes:
            if outcome.error:  # a 16x16 digit cannot carry the 128x128 watermark tile: blocked, never skipped
                console.print(f"  [yellow]{outcome.policy_id}[/yellow]: {outcome.error[:160]}")
        with gensdk.Engine({"policies": without}, audit=str(audit)) as engine:
            released = engine.generate(str(out / "models" / "digits-ddpm"), SEVENS)
        show_generation("16 sevens, without the image watermark", released)
        label = "without the image watermark"
        rows.append(("diffusion, every image policy", f"verdict {marked.verdict.value}: the 16x16 digits are too "
                                                       "small for the image watermark, so nothing is released"))
    written, verified = write_with_provenance(released.outputs, out / "images" / "diffusion")
    rows.append((f"diffusion, {label}", f"verdict {released.verdict.value}, {len(written)} PNGs, "
                                        f"{verified} provenance manifests verify"))
    rows.append(("diffusion digits judged", judge(model, out / "images" / "diffusion-grid.png")))
    return rows


def train(out: Path, budget_s: float) -> Any:
    from gensdk_diffusion import DiffusionFamily

    model = DiffusionFamily(train_options={**TRAINING, "time_budget_s": budget_s})
    with progress_bar(f"DDPM on 1,797 digits, {budget_s:.0f} s budget") as progress:
        model.fit("digits", progress=progress)
    model.save(out / "models" / "digits-ddpm")  # a diffusers DDPMPipeline directory + gensdk_model.json
    return model


def describe_training(model: Any) -> str:
    t = model.metadata["training"]
    return (f"{model.kind} DDPM, {t['images']:,} digits at 16x16 ({t['holdout_images']} more held out): "
            f"{t['steps']} steps in {t['seconds']:.0f} s, "
            f"loss {t['loss_history'][0]:.3f} -> {t['final_loss']:.3f}")


def write_with_provenance(outputs: list[Any], directory: Path) -> tuple[list[Path], int]:
    """PNGs with their signed provenance manifests embedded, then checked as a compliance reader would."""
    try:
        from gensdk_provenance import verify_file, write_outputs
    except ImportError:
        return gensdk.write_outputs(outputs, directory), 0
    written = write_outputs(outputs, directory)
    return written, sum(verify_file(path).ok for path in written)


def judge(model: Any, grid_path: Path) -> str:
    """A classifier of real digits labels 10 generated digits per class; a 10x10 grid goes to a PNG."""
    import numpy as np
    import torch
    from PIL import Image

    from gensdk_diffusion.evaluate import DigitJudge

    digit_judge = DigitJudge.fit(size=16)
    rows = [model.sample(10, seed=100 + d, conditions={"class": str(d)}) for d in range(10)]
    predicted = digit_judge.predict(torch.cat(rows))
    accuracy = float((predicted == np.repeat(np.arange(10), 10)).mean())
    grid = torch.cat([torch.cat(list(row[:, 0]), dim=1) for row in rows], dim=0)
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray((grid.numpy() * 255).round().astype(np.uint8))
    image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(grid_path)
    console.print(f"a classifier of real digits labels {accuracy:.0%} of 100 generated digits as the class asked for; "
                  f"grid: {grid_path}")
    return f"{accuracy:.0%} labelled as the digit asked for (classifier of real digits); grid {grid_path.name}"


def main() -> None:
    from demo import make_keys, policies_for  # examples/ is on sys.path when this file runs as a script

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo-diffusion"), help="Output directory (recreated).")
    parser.add_argument("--budget", type=float, default=60.0, help="Training seconds.")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    keys = make_keys(args.out)
    # fairness-image audits the mix of digits; its built-in 'digits' classifier reads 8x8 images only
    keys["fairness-image"] = {"options": {"classifier": FAIRNESS_CLASSIFIER}}
    rows = diffusion_step(args.out, args.out / "audit.db", lambda modality: policies_for(modality, keys), args.budget)
    for step, result in rows:
        console.print(f"[bold]{step}[/bold]: {result}")


if __name__ == "__main__":
    main()
