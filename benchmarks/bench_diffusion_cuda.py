"""Diffusion on a GPU: images/s of `Engine.generate` (zero policies) against the same diffusers pipeline called
directly, in float16 and bfloat16, interleaved in one run (target: engine >= 0.97x the direct rate).

The pipelines are those of bench_diffusion.py with random weights (nothing is downloaded): by default a
Stable-Diffusion-1.5-shaped text-to-image pipeline (860M-parameter UNet2DConditionModel, 8x VAE, 12-layer CLIP
text encoder) at 512x512, and the 32x32 unconditional DDPM. The engine runs with device "cuda" and the dtype
under test; the direct side gets the same pipeline object, on the same device and dtype. Exits 0 with a message where torch sees no CUDA device.

    .venv/bin/python benchmarks/bench_diffusion_cuda.py [--reps 5] [--batch 4] [--steps 20] [--shape sd15|small]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins"), str(REPO / "benchmarks")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--shape", choices=["sd15", "small"], default="sd15", help="text-to-image architecture")
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("bench_diffusion_cuda: torch sees no CUDA device (torch "
              f"{torch.__version__}); nothing to measure here. Run it on a machine with a GPU.")
        return 0
    from bench_diffusion import build_ddpm, build_text_to_image, engine_for, measure, sides

    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch": args.batch,
                              "steps": args.steps, "reps": args.reps, "shape": args.shape}
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = {f"text-to-image ({args.shape})": (build_text_to_image(Path(tmp), args.shape), "a red cat on a house"),
                     "unconditional (DDPM 32x32)": (build_ddpm(), None)}
        for dtype in args.dtypes.split(","):
            with engine_for(Path(tmp) / f"audit-{dtype}.db", device="cuda", dtype=dtype) as engine:
                for name, (pipeline, prompt) in pipelines.items():
                    pipeline.to("cuda", getattr(torch, dtype))  # the direct side's placement; the engine's is the same
                    calls = sides(pipeline, engine, args.batch, args.steps, args.seed, "cuda", prompt)
                    figures = measure(calls, args.reps, args.batch, sync=torch.cuda.synchronize)
                    figures["dtype_used"] = str(pipeline.unet.dtype)
                    report[f"{name}, {dtype}"] = figures
                    print(f"{name}, {dtype}:", json.dumps(figures), flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
