"""Differentially private training (DP-SGD, Abadi et al. 2016) of the GAN and VAE families, through Opacus.

DP-SGD bounds what one training row can change: each step samples rows independently with probability q
(Poisson sampling), clips every row's gradient to `dp_max_grad_norm`, sums, and adds Gaussian noise of that
scale times a noise multiplier. Opacus's `make_private_with_epsilon` picks the multiplier that spends exactly
the target (ε, δ) over the planned epochs, and its accountant (RDP) says what was spent in the end.

Only the network that reads real rows needs this:

* VAE: the whole model (the encoder reads rows, the decoder is trained to reproduce them);
* GAN: the critic. The generator never sees a real row, only the critic's scores of its own samples, so it is
  a function of the private critic and of public noise: differentially private by post-processing, at no
  extra cost in ε. (The generator's conditional vectors must then be public too: in DP mode they are drawn
  from the category frequencies, never from the rows of a batch.)

Per-row gradients come from Opacus's ghost clipping (Li et al. 2022): per-row gradient *norms* from the
activations and output gradients of each layer, then one more backward pass with each row's loss scaled by its
clipping factor. No per-row gradient is ever materialised, which on a 256x256 critic is ~15x faster than
Opacus's hooks (measured here: 0.05 s against 0.7-1.4 s per batch of 500). It needs each row's loss to come
from one forward pass, so the families give the critic real and generated rows as one batch, and gradient
penalties (a gradient of a gradient) are not possible: see docs/privacy.md for what DP mode changes.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

from pydantic import BaseModel, Field, model_validator

from gensdk.errors import ConfigError, MissingDependencyError

__all__ = ["PrivacyOptions", "PrivateFamily", "PrivateTraining", "require_opacus", "training_delta"]

# Rényi-DP accounting: the standard, conservative bound (Opacus's default PRV accountant is tighter by a few
# percent of ε and took 5-17 s to find the noise for a budget here).
ACCOUNTANT = "rdp"
# The Rényi orders the bound is minimised over. Any set gives a valid bound; these 21 (Opacus's default has
# 151) find the noise 4-5x faster, with multipliers within 1% of the default's, and reach smaller ε through
# the large orders.
ALPHAS = [1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 256]
# δ when none is given: the usual 1e-5, or smaller for tables of more than 10,000 rows, so that δ stays well
# below 1/rows (a δ near 1/rows would allow publishing one whole row outright).
DEFAULT_DELTA = 1e-5


class PrivacyOptions(BaseModel):
    """The DP options every GAN and VAE family takes. `dp_epsilon` switches DP training on."""

    dp_epsilon: float | None = Field(None, gt=0, le=1000)
    dp_delta: float | None = Field(None, gt=0, lt=1)
    # Per-row gradient norm bound C; the noise is C times the multiplier Opacus derives from (ε, δ, epochs).
    dp_max_grad_norm: float = Field(1.0, gt=0, le=10_000)

    @model_validator(mode="after")
    def _no_model_selection_under_dp(self) -> PrivacyOptions:
        # Early stopping keeps the epoch that scores best on the held-out rows: a choice made with private
        # rows outside the accountant. DP training runs its planned epochs (or stops on the time budget).
        if self.dp_epsilon is not None and getattr(self, "patience", None):
            raise ValueError("patience (early stopping on held-out rows) cannot be combined with dp_epsilon")
        return self


def require_opacus() -> Any:
    """opacus, 1.6 or later (the first with `wrap_model=False`: hooks on the network itself, no wrapper)."""
    try:
        import opacus
    except ImportError:
        raise MissingDependencyError("opacus", "dp", "Differentially private training (dp_epsilon)") from None
    if tuple(int(part) for part in opacus.__version__.split(".")[:2] if part.isdigit()) < (1, 6):
        raise MissingDependencyError("opacus>=1.6", "dp", f"Differentially private training (opacus {opacus.__version__} is too old)")
    return opacus


def training_delta(delta: float | None, rows: int) -> float:
    """The δ to train with: the one given (which must be below 1/rows), else DEFAULT_DELTA or 0.1/rows."""
    if delta is None:
        return min(DEFAULT_DELTA, 0.1 / rows)
    if delta >= 1 / rows:
        raise ConfigError(f"dp_delta {delta:g} is not below 1/rows = {1 / rows:.3g} for {rows} training rows: such a δ "
                          "allows publishing a whole row; use a smaller dp_delta (1e-5 or 0.1/rows are usual)")
    return delta


class PrivateTraining:
    """One network trained with DP-SGD: Poisson-sampled batches of row indices, ghost clipping, noise, and the
    accountant. `batches()` yields index tensors; a step is `step(criterion(outputs, targets))`."""

    def __init__(self, module: Any, optimizer: Any, criterion: Any, *, rows: int, batch_size: int, epochs: int,
                 options: PrivacyOptions):
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        opacus = require_opacus()
        self.delta = training_delta(options.dp_delta, rows)
        self.target_epsilon = float(options.dp_epsilon)  # type: ignore[arg-type]
        self.max_grad_norm = options.dp_max_grad_norm
        self.library = f"opacus {opacus.__version__}"
        # Batches of row indices: the rows themselves stay on the training device, indexed per batch.
        indices = DataLoader(TensorDataset(torch.arange(rows)), batch_size=min(batch_size, rows))
        self.sample_rate = 1 / len(indices)
        with warnings.catch_warnings():
            # Opacus's advice to turn on secure_mode (a cryptographic RNG) for production; see docs/privacy.md.
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            warnings.filterwarnings("ignore", message="Optimal order is the")
            self.engine = opacus.PrivacyEngine(accountant=ACCOUNTANT)
            try:
                self.hooks, self.optimizer, self.criterion, self.loader = self.engine.make_private_with_epsilon(
                    module=module, optimizer=optimizer, criterion=criterion, data_loader=indices,
                    target_epsilon=self.target_epsilon, target_delta=self.delta, epochs=epochs,
                    max_grad_norm=self.max_grad_norm, grad_sample_mode="ghost", wrap_model=False, alphas=ALPHAS)
            except ValueError as exc:
                if "budget is too low" not in str(exc):
                    raise
                raise ConfigError(f"dp_epsilon {self.target_epsilon:g} cannot be reached in {epochs} epochs of "
                                  f"{len(indices)} batches over {rows} rows (δ = {self.delta:g}): {exc}") from None
        self.steps = 0

    def batches(self) -> Iterator[Any]:
        """One epoch: about 1/sample_rate batches, each row in each batch with probability sample_rate."""
        for (rows,) in self.loader:
            yield rows

    def step(self, loss: Any) -> float:
        """Clip each row's gradient, add the noise, update, and let the accountant count the step. `loss`: the
        criterion's per-row losses, one dimension (Opacus multiplies them by the clip factors elementwise: a
        (rows, 1) column would broadcast into a (rows, rows) matrix and clip nothing)."""
        if loss.loss_per_sample.dim() != 1:
            raise ValueError(f"per-row losses must be one-dimensional, got shape {tuple(loss.loss_per_sample.shape)}")
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # torch's note that a backward hook fires on a layer whose input (the data) needs no gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        self.optimizer.step()
        self.steps += 1
        return loss.item()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The network used outside a private step (the critic scoring generated rows for the generator's
        loss): no activations captured, no per-row norms computed."""
        self.hooks.disable_hooks()
        try:
            yield
        finally:
            self.hooks.enable_hooks()

    def close(self) -> None:
        self.hooks.cleanup()

    def report(self) -> dict[str, Any]:
        """What goes into the model's metadata: ε spent (from the accountant, over the steps taken), δ, and
        how it was trained."""
        with warnings.catch_warnings():
            # RDP is evaluated at a fixed set of orders; when the best is the largest, the bound is looser than
            # it could be: ε is over-, never under-stated.
            warnings.filterwarnings("ignore", message="Optimal order is the")
            spent = float(self.engine.accountant.get_epsilon(self.delta, alphas=ALPHAS)) if self.steps else 0.0
        return {"epsilon": round(spent, 4),
                "delta": self.delta, "target_epsilon": self.target_epsilon, "max_grad_norm": self.max_grad_norm,
                "noise_multiplier": round(float(self.optimizer.noise_multiplier), 4), "steps": self.steps,
                "sample_rate": round(self.sample_rate, 6), "accountant": ACCOUNTANT, "library": self.library}


class PrivateFamily:
    """Mixed into the GAN and VAE families (before their base): `fit` with the privacy bookkeeping around the
    family's own training, and `identity()` carrying ε and δ into every audit record of the model's outputs.
    The family creates `self._private` (a PrivateTraining) in its first training epoch."""

    options: Any
    metadata: dict[str, Any]
    _private: PrivateTraining | None = None

    def fit(self, data: Any, progress: Any = None) -> Any:
        if self.options.dp_epsilon is not None:
            require_opacus()  # before any preprocessing: a missing extra is the first thing to hear about
        self._private = None
        try:
            super().fit(data, progress)  # type: ignore[misc]
        finally:
            private, self._private = self._private, None
            if private is not None:
                private.close()
        if private is not None:
            self.metadata["differential_privacy"] = private.report()
        return self

    def identity(self) -> dict[str, Any]:
        identity = super().identity()  # type: ignore[misc]
        dp = self.metadata.get("differential_privacy")
        if dp:
            identity["differential_privacy"] = {k: dp[k] for k in ("epsilon", "delta", "accountant", "max_grad_norm")}
        return identity
