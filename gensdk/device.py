"""Device, dtype and seeds: chosen once by the engine, the same code on CUDA and CPU."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
from typing import Iterator

from gensdk.errors import ConfigError

__all__ = ["batch_seed", "inference_mode", "resolve_device", "resolve_dtype"]


def _torch_installed() -> bool:
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def resolve_device(spec: str) -> str:
    """'auto' is CUDA when torch sees a GPU, else CPU. An explicit CUDA device that is absent is an error."""
    if spec == "cpu":
        return "cpu"
    if spec == "auto":
        if not _torch_installed():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" or spec.startswith("cuda:"):
        if not _torch_installed():
            raise ConfigError(f"device {spec!r} needs torch with CUDA; torch is not installed")
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} was requested but torch sees no CUDA device")
        index = spec.partition(":")[2] or "0"
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 ...)")
        return spec
    raise ConfigError(f"unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_dtype(spec: str, device: str) -> str:
    """'auto': bfloat16 on CUDA (the tensor-core path), float32 on CPU (where half precision is slow)."""
    if spec != "auto":
        return spec
    return "bfloat16" if device.startswith("cuda") else "float32"


@contextlib.contextmanager
def inference_mode() -> Iterator[None]:
    """torch.inference_mode when torch is in use; nothing otherwise (tables from numpy, say)."""
    if "torch" not in sys.modules:
        yield
        return
    import torch

    with torch.inference_mode():
        yield


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of micro-batch i: the request seed itself for the first, a stable derivation after it."""
    if batch_index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
