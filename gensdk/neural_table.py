"""The base the neural table families (GAN, VAE) share: fit on a table through `TableTransform`, generate with
conditions (the conditional vector and conditioned rejection sampling), diagnose mode collapse, save and load.

    class MyTableFamily(NeuralTableFamily):       # supplies the network
        def _build(self): ...
        def _train_epoch(self, x, gen): ...
        def _validation_loss(self, x): ...
        def _decode_raw(self, n, gen, cond): ...
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
from pydantic import Field

from gensdk.errors import ConfigError, DataError, ModelLoadError, RequestError
from gensdk.family import MANIFEST_NAME, ModelFamily, Progress, weights_digest
from gensdk.outputs import Output, TableOutput
from gensdk.request import GenerationContext, Request, validate_options
from gensdk.tabular import TableSchema, fingerprint, read_table
from gensdk.tabular_transform import (MAX_MODES, ConditionSampler, TableTransform, check_conditions, conditioned_rows,
                                      coverage_report, sample_rows, split_holdout)
from gensdk.weights import WEIGHTS_NAME, TrainingOptions, load_state, read_weights, save_net

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MIN_TRAINING_ROWS", "NeuralTableFamily", "NeuralTableOptions"]

log = logging.getLogger("gensdk.neural_table")

MIN_TRAINING_ROWS = 10


class NeuralTableOptions(TrainingOptions):
    """Options every neural table family takes; GAN and VAE add their network's."""

    epochs: int = Field(300, ge=1, le=100_000)
    batch_size: int = Field(500, ge=2, le=1_000_000)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    holdout_fraction: float = Field(0.1, ge=0, lt=1)
    max_modes: int = Field(MAX_MODES, ge=1, le=50)
    target: str | None = None
    sensitive: list[str] = Field(default_factory=list)
    # Unconditional rows drawn after training for the coverage (mode-collapse) report; 0 skips it.
    diagnostic_rows: int = Field(2000, ge=0, le=1_000_000)


class NeuralTableFamily(ModelFamily):
    """Fit, generate (with conditions), diagnose, save and load for a torch table model; a subclass supplies the
    network: `_build()`, `_train_epoch()`, `_validation_loss()`, `_decode_raw()`."""

    modality: ClassVar[str] = "table"  # type: ignore[assignment]
    can_train: ClassVar[bool] = True
    conditional: ClassVar[bool] = True
    # Rows per micro-batch: one table output each; the networks are small, 50k rows is a few MB of activations.
    default_batch_size: ClassVar[int] = 50_000
    Options: ClassVar[type[NeuralTableOptions]] = NeuralTableOptions

    def __init__(self, options: NeuralTableOptions | dict[str, Any] | None = None):
        self.options = validate_options(self.Options, options, f"{self.id} options")
        self.schema: TableSchema | None = None
        self.transform: TableTransform | None = None
        self.cond: ConditionSampler | None = None
        self.net: Any = None
        self.metadata: dict[str, Any] = {}
        self.reference: Any = None

    # -- what a subclass supplies ---------------------------------------------------------------------------

    def _build(self) -> Any:
        """The torch module (a ModuleDict for several networks) for `self.transform` and `self.cond`."""
        raise NotImplementedError

    def _train_epoch(self, x: Any, rng: np.random.Generator) -> dict[str, float]:
        raise NotImplementedError

    def _validation_loss(self, x: Any) -> float:
        """Lower is better; drives early stopping."""
        raise NotImplementedError

    def _decode_raw(self, n: int, entry: int | None, gen: Any) -> Any:
        """`n` raw network rows (pre-activation, on the CPU) from the seeded generator `gen`: unconditional
        when `entry` is None, else steered towards the conditional-vector entry `entry`."""
        raise NotImplementedError

    def _after_training(self, x: Any) -> None:
        """Anything computed from the trained network and the encoded training rows (VAE: latent statistics)."""

    def _condition_focus(self) -> tuple[str, float] | None:
        """(column, share) the conditional vector favours (see ConditionSampler), or None: CTGAN's uniform choice."""
        return None

    # -- training -------------------------------------------------------------------------------------------

    def fit(self, data: Any, progress: Progress | None = None) -> NeuralTableFamily:
        import torch

        from gensdk.device import resolve_device
        from gensdk.reference import TrainingReference

        frame = read_table(data)
        opts = self.options
        if len(frame) < MIN_TRAINING_ROWS:
            raise DataError(f"{len(frame)} rows are too few to train {self.id} (at least {MIN_TRAINING_ROWS})")
        self.schema = TableSchema.infer(frame, allow_missing=True, allow_datetime=True, sensitive=opts.sensitive, target=opts.target)
        train, holdout = split_holdout(frame, opts.holdout_fraction, opts.seed)
        self.transform = TableTransform.fit(train, self.schema, opts.seed, opts.max_modes)
        rng = np.random.default_rng(opts.seed)
        x = self.transform.encode(train, rng)
        x_hold = self.transform.encode(holdout, rng) if holdout is not None else x[rng.choice(len(x), min(len(x), 2000), replace=False)]
        self.cond = ConditionSampler(self.transform, x, focus=self._condition_focus())
        self.device = resolve_device(opts.device)
        self._optims = None
        with torch.random.fork_rng(devices=[]):  # seeding must not reach into the caller's global RNG
            torch.manual_seed(opts.seed)
            self.net = self._build().to(self.device)
            x_t = torch.as_tensor(x, device=self.device)
            history = self._run_epochs(x_t, torch.as_tensor(x_hold, device=self.device), rng, progress)
            self._after_training(x_t)
        self.net.to("cpu").eval()
        self.metadata = {"training_rows": len(frame), "holdout_rows": 0 if holdout is None else len(holdout),
                         "training_data_fingerprint": fingerprint(frame), **history}
        if opts.diagnostic_rows:
            self.metadata["coverage"] = coverage_report(self.schema, frame, self.sample(opts.diagnostic_rows, seed=opts.seed))
        self.reference = None
        if holdout is not None and not any(c.numeric and c.missing for c in self.schema.columns):
            self.reference = TrainingReference.build(self.schema, train, holdout)
        elif holdout is not None:
            log.warning("%s: numeric columns with missing cells: no training reference kept (the memorisation "
                        "policy will refuse this model)", self.id)
        return self

    def _run_epochs(self, x: Any, x_hold: Any, rng: np.random.Generator, progress: Progress | None) -> dict[str, Any]:
        import copy

        opts = self.options
        started, best, best_epoch, best_state, stopped = time.perf_counter(), np.inf, 0, None, "epochs"
        for epoch in range(1, opts.epochs + 1):
            self.net.train()
            losses = self._train_epoch(x, rng)
            self.net.eval()
            score = self._validation_loss(x_hold)
            if score < best:
                best, best_epoch = score, epoch
                best_state = copy.deepcopy(self.net.state_dict()) if opts.patience else None
            elapsed = time.perf_counter() - started
            if progress:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
                progress(epoch, opts.epochs, f"{shown}, validation {score:.4f}")
            if opts.patience and epoch - best_epoch >= opts.patience:
                stopped = "early stopping"
                break
            if opts.time_budget_s and elapsed >= opts.time_budget_s:
                stopped = "time budget"
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        elapsed = time.perf_counter() - started
        return {"epochs_run": epoch, "best_epoch": best_epoch, "stopped": stopped, "validation_loss": float(best),
                "train_seconds": round(elapsed, 3), "seconds_per_epoch": round(elapsed / epoch, 4),
                "final_losses": {k: round(float(v), 5) for k, v in losses.items()}}

    def training_reference(self) -> Any:
        return self.reference

    # -- generation -----------------------------------------------------------------------------------------

    def validate_request(self, request: Request) -> None:
        super().validate_request(request)
        self._require_fitted()
        check_conditions(self.schema, request.conditions)

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        self.net.to(context.device)  # noise is drawn on the CPU (the same rows on every device), run there
        return [TableOutput(self.sample(request.n, context.seed, request.conditions))]

    def sample(self, n: int, seed: int = 0, conditions: dict[str, Any] | None = None) -> pd.DataFrame:
        """`n` rows, deterministic in `seed`. Direct sampling, for diagnostics and benchmarks: what users
        are handed goes through `Engine.generate`, and so through the policies."""
        self._require_fitted()
        conditions = check_conditions(self.schema, conditions or {})
        if not conditions:
            return self._sample_frame(n, seed, None)
        # Steer with the conditional vector towards the rarest asked-for category (the one rejection
        # sampling would wait longest for); rejection sampling then makes every condition hold exactly.
        entries = {name: self.cond.entry(name, value) for name, value in conditions.items()}
        steer = min(entries.values(), key=lambda e: self.cond.state()[e])
        return conditioned_rows(lambda m, round_: self._sample_frame(m, _round_seed(seed, round_), steer), conditions, n)

    def _sample_frame(self, n: int, seed: int, entry: int | None) -> pd.DataFrame:
        import torch

        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            raw = self._decode_raw(n, entry, gen)
        return self.transform.decode(sample_rows(raw, self.transform.spans, gen).numpy())

    def _require_fitted(self) -> None:
        if self.net is None or self.schema is None:
            raise RequestError(f"this {self.id} model has not been fitted; call fit() or load a saved model")

    # -- persistence ----------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"options": self.options.model_dump(mode="json"),
                "schema": self.schema.to_json() if self.schema else None,
                "transform": self.transform.to_json() if self.transform else None,
                "license": self.options.license, "data_source": self.options.data_source, "training": self.metadata}

    def save(self, path: str | Path) -> Path:
        import torch

        from gensdk.reference import TrainingReference

        self._require_fitted()
        path = save_net(self, self.net, {"cond_frequency": torch.as_tensor(self.cond.state(), dtype=torch.float64)}, path)
        TrainingReference.save_or_clear(self.reference, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeuralTableFamily:
        from gensdk.reference import TrainingReference

        path = Path(path)
        manifest = cls.read_own_manifest(path)
        try:
            model = cls(manifest.get("options"))
            model.schema = TableSchema.from_json(manifest["schema"])
            model.transform = TableTransform.from_json(model.schema, manifest["transform"])
        except (ConfigError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path / MANIFEST_NAME} is corrupted: {exc}") from None
        model.metadata = manifest.get("training", {})
        model.cond = ConditionSampler(model.transform, focus=model._condition_focus())
        tensors = read_weights(path / WEIGHTS_NAME)
        if "cond_frequency" not in tensors or len(tensors["cond_frequency"]) != model.cond.width:
            raise ModelLoadError(f"weights file {path / WEIGHTS_NAME} lacks the category frequencies of its schema")
        model.cond.set_state(tensors.pop("cond_frequency").numpy())
        model.net = load_state(model._build(), tensors, path / WEIGHTS_NAME)
        model.reference = TrainingReference.load(path)
        model.source_path = path
        model.weights_digest = weights_digest(path / WEIGHTS_NAME)
        return model


def _round_seed(seed: int, round_: int) -> int:
    from gensdk.device import batch_seed

    return batch_seed(seed, round_)
