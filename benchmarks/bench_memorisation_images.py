"""Memorised training images: does the check pass a trained image model, catch a copying one, and how fast is it?

    .venv/bin/python benchmarks/bench_memorisation_images.py [--family vae|gan] [--budget 120] [--images 2000]
                                                             [--check 10000] [--device cpu] [--threads 1]

1. A small image VAE (or GAN) trained on the bundled digits (1,797 8x8 images, 5% = 90 held out) for at most
   --budget seconds: share of its --images generated images that pass (the policy in 'drop' mode, through
   the engine), and the engine's verdict.
2. A "generator" returning training images plus 1% noise (Gaussian, sigma 0.01 per pixel in [0, 1]): share of
   its images flagged, and the engine's verdict (action 'replace': systematic copying blocks anyway).
3. Time to check --check images: the policy's search against the digits reference (1,707 x 64 values) and
   against 20,000 random 32x32 colour training images (area-averaged to 16x16x3 = 768 values), with the time
   to generate as many images side by side (ratios are what to compare on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "policies")]  # also from a venv without gensdk installed


def train(family: str, budget: float):
    from gensdk.images import load_digits

    if family == "vae":
        from gensdk_vae import ImageVAEFamily as cls

        options = dict(epochs=10_000, batch_size=64, latent_dim=8, width=16, learning_rate=2e-3)
    else:
        from gensdk_gan import ImageGANFamily as cls

        options = dict(epochs=10_000, batch_size=64, noise_dim=16, width=16)
    started = time.perf_counter()
    model = cls({**options, "time_budget_s": budget, "diagnostic_samples": 0, "seed": 0}).fit(load_digits())
    print(f"{family}: trained {model.metadata['epochs_run']} epochs in {time.perf_counter() - started:.0f} s ({options})")
    return model


def engine_for(family: str, action: str, quantile: float):
    import gensdk_gan.plugin
    import gensdk_privacy.plugin
    import gensdk_vae.plugin
    from gensdk.testing import make_engine

    plugin = gensdk_vae.plugin if family == "vae" else gensdk_gan.plugin
    policies = [{"id": "memorisation", "options": {"action": action, "quantile": quantile}}]
    return make_engine(Path(tempfile.mkdtemp()), plugins=[gensdk_privacy.plugin, plugin], config={"policies": policies})


class CopyImages:
    """Training images plus `noise` per pixel, as a model family (built lazily: gensdk is imported in main)."""

    @staticmethod
    def make(training, reference, noise: float):
        import torch

        from gensdk.outputs import ImageOutput
        from gensdk.testing import InMemoryFamily

        class Copy(InMemoryFamily):
            id, modality, default_batch_size = "copy-images", "image", 100_000

            def _generate(self, request, params, context):
                gen = torch.Generator().manual_seed(context.seed)
                picked = torch.randint(0, len(training), (request.n,), generator=gen)
                noisy = training[picked] + noise * torch.randn(request.n, *training.shape[1:], generator=gen)
                return [ImageOutput(p) for p in noisy.clamp(0, 1)]

        return Copy(reference)


def check_seconds(reference, pixels, quantile: float, device: str) -> tuple[float, float]:
    """(share flagged, seconds) the way the policy judges the images."""
    started = time.perf_counter()
    threshold = reference.holdout_quantile(quantile)
    encoded = reference.encode(pixels)
    dcr = reference.distances_to_closest(encoded, device=device, cap=max(threshold, 1e-2))
    flagged = (dcr < threshold) | reference.exact_copies(encoded, dcr)
    return float(flagged.mean()), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("vae", "gan"), default="vae")
    parser.add_argument("--budget", type=float, default=120, help="training seconds")
    parser.add_argument("--images", type=int, default=2000, help="generated images judged in [1] and [2]")
    parser.add_argument("--check", type=int, default=10_000, help="images timed in [3]")
    parser.add_argument("--quantile", type=float, default=0.05)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()

    import torch

    from gensdk.images import split_holdout_images
    from gensdk.reference import ImageReference

    torch.set_num_threads(args.threads)
    model = train(args.family, args.budget)
    reference = model.training_reference()
    print(f"    reference: {len(reference.training)} training images, {len(reference.holdout)} held out, "
          f"{reference.width} values each; threshold (held-out DCR q={args.quantile}) {reference.holdout_quantile(args.quantile):.4f}")
    rows = []

    # 1. the trained model's own images, flagged ones dropped
    with engine_for(args.family, "drop", args.quantile) as engine:
        result = engine.generate(model, n=args.images, seed=1)
    passed = len(result.outputs)
    rows.append((f"[1] trained {args.family}: images that pass", f"{passed:,} of {args.images:,} ({passed / args.images:.2%})",
                 f"verdict {result.verdict.value}"))

    # 2. a copying generator: training images + 1% noise
    from gensdk.images import load_digits

    trained_on = split_holdout_images(load_digits(), model.options.holdout_fraction, model.options.seed)[0].pixels
    copier = CopyImages.make(trained_on, reference, noise=0.01)
    with engine_for(args.family, "replace", args.quantile) as engine:
        result = engine.generate(copier, n=args.images, seed=1)
    flagged = sum(bool(f.details.get("memorised")) for f in result.findings)
    rows.append(("[2] training images + 1% noise: flagged", f"{flagged:,} of {args.images:,} ({flagged / args.images:.2%})",
                 f"verdict {result.verdict.value}, {len(result.outputs)} released"))

    # 3. timing, side by side with generating as many images
    started = time.perf_counter()
    generated = model.sample(args.check, seed=2)
    generate_s = time.perf_counter() - started
    share, seconds = check_seconds(reference, generated, args.quantile, args.device)
    rows.append((f"[3] check {args.check:,} images vs {len(reference.training):,} digits", f"{seconds:.2f} s ({seconds / generate_s:.2f}x generating them)",
                 f"{share:.2%} flagged; generate {generate_s:.2f} s"))
    gen = torch.Generator().manual_seed(0)
    colour = torch.rand(20_500, 3, 32, 32, generator=gen)
    started = time.perf_counter()
    big = ImageReference.build_images(colour[:20_000], colour[20_000:])
    build_s = time.perf_counter() - started
    queries = torch.rand(args.check, 3, 32, 32, generator=gen)
    share, seconds = check_seconds(big, queries, args.quantile, args.device)
    rows.append((f"    check {args.check:,} 32x32 RGB vs 20,000 (768 values)", f"{seconds:.2f} s",
                 f"reference built in {build_s:.2f} s, {big.training.nbytes / 2**20:.0f} MiB"))

    width = max(len(r[0]) for r in rows)
    for name, figure, note in rows:
        print(f"{name:<{width}}  {figure:<34}  {note}")


if __name__ == "__main__":
    main()
