"""Small DDPMs that gensdk trains on scikit-learn's handwritten digits, judged by a classifier of real digits.

Two models train for the same CPU time budget (default 180 s each; or `--epochs N`, the same work whatever the
machine's load) with `gensdk train diffusion`'s defaults
(16x16 digits upscaled from 8x8, UNet2DModel of widths 16/32/64, v-prediction with min-SNR weighting, EMA):

* **unconditional**: the judge (an RBF support-vector classifier trained on real digits, see
  `gensdk_diffusion.evaluate`) labels `--samples` generated digits; reported: the share of each class, the
  smallest and largest share, and the total-variation distance to the training class shares (0 = the same
  mix of digits as the training set; collapse onto a few digits shows as a large distance);
* **class-conditional**: `--per-class` digits of each class are asked for; reported: the share the judge labels
  as the class asked for, overall and for the worst class, at guidance scale 1 (plain conditional, the
  default) and 2 (classifier-free guidance through the null class).

Sampling is DDIM with 50 steps (the models' manifest default). Grids of samples are written as PNGs under
`--out`, to look at. Everything is local: the digits ship with scikit-learn.

    .venv/bin/python benchmarks/bench_diffusion_digits.py --budget 180 --out out/bench-diffusion
    .venv/bin/python benchmarks/bench_diffusion_digits.py --unconditional-model DIR --conditional-model DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def train(conditional: bool, budget: float, epochs: int | None, out: Path, seed: int) -> Any:
    from gensdk.cli.progress import progress_bar
    from gensdk_diffusion import DiffusionFamily

    limit = {"epochs": epochs} if epochs else {"time_budget_s": budget, "epochs": 100_000}
    options = {"class_conditional": conditional, "seed": seed, **limit,
               "license": "BSD-3-Clause", "data_source": "scikit-learn load_digits"}
    model = DiffusionFamily(train_options=options)
    what = f"{epochs} epochs" if epochs else f"{budget:.0f} s"
    with progress_bar(f"{'class-conditional' if conditional else 'unconditional'} DDPM, {what}") as progress:
        model.fit("digits", progress=progress)
    model.save(out / ("digits-conditional" if conditional else "digits-unconditional"))
    return model


def load(path: str) -> Any:
    from gensdk_diffusion import DiffusionFamily

    return DiffusionFamily.load(path)


def sample(model: Any, n: int, seed: int, batch: int = 100, **request: Any) -> Any:
    import torch

    parts = [model.sample(min(batch, n - start), seed=seed + start, **request) for start in range(0, n, batch)]
    return torch.cat(parts)


def unconditional_figures(model: Any, judge: Any, n: int) -> dict[str, Any]:
    from gensdk_diffusion.evaluate import class_shares

    shares = class_shares(judge.predict(sample(model, n, seed=1000)))
    training = [model.metadata["class_shares"][str(c)] for c in range(10)]
    return {"samples": n, "class_shares": [round(s, 4) for s in shares], "min_share": round(min(shares), 4),
            "max_share": round(max(shares), 4),
            "tv_distance_to_training_mix": round(0.5 * float(np.abs(np.array(shares) - training).sum()), 4)}


def conditional_figures(model: Any, judge: Any, per_class: int, guidance: float) -> dict[str, Any]:
    params = {"guidance_scale": guidance}
    accuracy = []
    for digit in range(10):
        pixels = sample(model, per_class, seed=2000 + 100 * digit, conditions={"class": str(digit)}, params=params)
        accuracy.append(float((judge.predict(pixels) == digit).mean()))
    return {"guidance_scale": guidance,
            "accuracy": round(float(np.mean(accuracy)), 4), "worst_class_accuracy": round(min(accuracy), 4),
            "per_class": [round(a, 3) for a in accuracy]}


def save_grid(model: Any, path: Path, conditional: bool) -> None:
    """10 x 10 digits: one class per row for a class-conditional model, 100 unconditional samples otherwise."""
    from PIL import Image

    if conditional:
        rows = [sample(model, 10, seed=3000 + d, conditions={"class": str(d)}) for d in range(10)]
    else:
        rows = [sample(model, 10, seed=3000 + r) for r in range(10)]
    grid = np.concatenate([np.concatenate(list(row[:, 0].numpy()), axis=1) for row in rows], axis=0)
    image = Image.fromarray((grid * 255).round().astype(np.uint8))
    image.resize((image.width * 4, image.height * 4), Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=180.0, help="Training seconds per model.")
    parser.add_argument("--epochs", type=int, default=None, help="Train this many epochs instead of --budget seconds "
                        "(the same work whatever the machine's load).")
    parser.add_argument("--samples", type=int, default=1000, help="Unconditional samples judged.")
    parser.add_argument("--per-class", type=int, default=50, help="Class-conditional samples judged per class.")
    parser.add_argument("--out", type=Path, default=Path("out/bench-diffusion"), help="Models, grids and JSON.")
    parser.add_argument("--unconditional-model", default=None, help="Judge this model instead of training one.")
    parser.add_argument("--conditional-model", default=None, help="Judge this model instead of training one.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from gensdk_diffusion.evaluate import DigitJudge

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    started = time.perf_counter()
    uncond = load(args.unconditional_model) if args.unconditional_model else train(False, args.budget, args.epochs, args.out, args.seed)
    cond = load(args.conditional_model) if args.conditional_model else train(True, args.budget, args.epochs, args.out, args.seed)
    figures = ("seconds", "cpu_seconds", "steps", "epochs_run", "final_loss")
    report["training"] = {name: {k: m.metadata["training"].get(k) for k in figures}
                          for name, m in (("unconditional", uncond), ("class_conditional", cond))}
    side = uncond.pipeline.unet.config.sample_size
    judge = DigitJudge.fit(size=side if isinstance(side, int) else side[0])
    report["judge_heldout_accuracy_on_real_digits"] = round(judge.heldout_accuracy, 4)
    report["unconditional"] = unconditional_figures(uncond, judge, args.samples)
    report["class_conditional"] = [conditional_figures(cond, judge, args.per_class, g) for g in (1.0, 2.0)]
    save_grid(uncond, args.out / "unconditional.png", conditional=False)
    save_grid(cond, args.out / "class-conditional.png", conditional=True)
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    (args.out / "digits.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
