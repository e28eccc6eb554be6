"""`bench_llm.py` on a GPU in bfloat16: engine (no policies) against raw `model.generate`, same model and seed.

    python benchmarks/bench_llm_cuda.py [--reps 5] [--new-tokens 64]

Exits with status 0 and a one-line message when torch sees no CUDA device, so it can sit in any CI job.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_llm  # noqa: E402


def cuda_available() -> bool:
    try:
        import torch
    except ModuleNotFoundError:
        return False
    return torch.cuda.is_available()


if __name__ == "__main__":
    if not cuda_available():
        print("bench_llm_cuda: no CUDA device visible to torch; nothing to measure (run bench_llm.py for the CPU).")
        sys.exit(0)
    bench_llm.main(device="cuda", dtype="bfloat16")
