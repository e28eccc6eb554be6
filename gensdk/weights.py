"""What the torch families (table and image GAN/VAE) share: the training options common to all of them, and
their weights as safetensors, read and loaded into a freshly built module with errors that name the file and
the tensor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gensdk.errors import ModelLoadError

__all__ = ["WEIGHTS_NAME", "TrainingOptions", "load_state", "read_weights", "save_net"]


class TrainingOptions(BaseModel):
    """Options every torch family takes; each family base adds `epochs`, `batch_size` and `learning_rate` with
    the defaults that suit its data, and each family its network's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Stop after this many epochs without a better validation score, and keep the best epoch's weights.
    patience: int | None = Field(None, ge=1)
    # Stop after the epoch that crosses this many seconds of training (benchmarks: equal time for all).
    time_budget_s: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    license: str | None = None
    data_source: str | None = None

WEIGHTS_NAME = "model.safetensors"


def save_net(family: Any, net: Any, extra: dict[str, Any], path: str | Path) -> Path:
    """Write a fitted torch family to the directory `path`: the network's state as `net.*` tensors beside
    `extra` (the family's own tensors) in WEIGHTS_NAME, and its manifest (`family.config()`)."""
    from safetensors.torch import save_file

    from gensdk.family import write_manifest

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file({**tensors, **extra}, str(path / WEIGHTS_NAME))
    write_manifest(path, type(family), family.config())
    return path


def read_weights(path: Path) -> dict[str, Any]:
    """safetensors as torch tensors; missing or damaged files are a ModelLoadError naming the file."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelLoadError(f"weights file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise ModelLoadError(f"weights file {path} is truncated or corrupted: {exc}") from None


def load_state(module: Any, tensors: dict[str, Any], path: Path) -> Any:
    """Load `net.*` tensors into a freshly built module; a missing, extra or misshapen tensor names itself. A
    module that moved a tensor since an older version maps the old name to the new in `renamed_tensors`."""
    renamed = getattr(module, "renamed_tensors", {})
    state = {renamed.get(k[len("net."):], k[len("net."):]): v for k, v in tensors.items() if k.startswith("net.")}
    expected = module.state_dict()
    if set(state) != set(expected):
        raise ModelLoadError(f"weights file {path} does not match the network: missing {sorted(set(expected) - set(state))[:5]}, "
                             f"unexpected {sorted(set(state) - set(expected))[:5]}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelLoadError(f"weights file {path}: {name} has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)}")
    module.load_state_dict(state)
    return module.eval()
