"""Gaussian mixture model for tables: the simplest generative model, and the reference family for plugin authors.

How it models a table: continuous and integer columns are standardised, categorical and boolean columns are
one-hot encoded, and one full-covariance Gaussian mixture (scikit-learn's EM) is fitted over the joint vector.
Sampling draws a component, then a Gaussian vector, and decodes it: numbers are de-standardised, rounded and
clipped to the training range; each one-hot block becomes its argmax category.

Conditional sampling is exact for the fitted mixture: conditioning on some coordinates (a category's one-hot
block, or a standardised number) re-weights each component by how likely it makes the condition, and replaces
each component's Gaussian by its conditional Gaussian (the Schur complement).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gensdk.errors import ConfigError, DataError, ModelLoadError, RequestError
from gensdk.family import MANIFEST_NAME, ModelFamily, Progress, weights_digest, write_manifest
from gensdk.outputs import Output, TableOutput
from gensdk.reference import TrainingReference
from gensdk.request import GenerationContext, Request, validate_options
from gensdk.tabular import TableSchema, fingerprint, read_table

__all__ = ["GMMFamily", "GMMOptions"]

WEIGHTS_NAME = "model.safetensors"
# A one-hot block has a singular covariance (its entries sum to one); this ridge keeps every component's
# covariance invertible so conditioning on a category is well defined.
COVARIANCE_RIDGE = 1e-3
# A held-out sample smaller than this says too little about "how close is a fresh row" to calibrate the
# memorisation check; smaller tables are fitted on every row and saved without a training reference.
MIN_HOLDOUT_ROWS = 30

log = logging.getLogger("gensdk_gmm")


class GMMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_components: int = Field(10, ge=1, le=200)
    max_iter: int = Field(200, ge=1, le=10_000)
    tol: float = Field(1e-3, gt=0)
    seed: int = Field(0, ge=0)
    # Share of the rows kept out of EM and saved (with the training rows) as the memorisation reference.
    holdout_fraction: float = Field(0.1, ge=0, lt=1)
    # Declared roles, kept in the schema: what the fairness audits default to (policy fairness-table).
    sensitive: list[str] = Field(default_factory=list)
    target: str | None = None
    license: str | None = None
    data_source: str | None = None


class GMMFamily(ModelFamily):
    id: ClassVar[str] = "gmm"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "table"  # type: ignore[assignment]
    can_train: ClassVar[bool] = True
    conditional: ClassVar[bool] = True
    # Rows per micro-batch: one table output each; 100k rows of a 100-wide table is ~80 MB in float64.
    default_batch_size: ClassVar[int] = 100_000

    def __init__(self, options: GMMOptions | dict[str, Any] | None = None):
        # `train gmm --components 0` is a usage error, not a crash
        self.options = validate_options(GMMOptions, options, "GMM options")
        self.schema: TableSchema | None = None
        self.params: dict[str, np.ndarray] = {}
        self.metadata: dict[str, Any] = {}
        self.reference: TrainingReference | None = None

    # -- training -------------------------------------------------------------------------------------------

    def fit(self, data: Any, progress: Progress | None = None) -> GMMFamily:
        frame = read_table(data)
        self.schema = TableSchema.infer(frame, sensitive=self.options.sensitive, target=self.options.target)
        train, holdout = self._split_holdout(frame)
        self.params = {"center": np.zeros(0), "scale": np.zeros(0)}
        self._set_scaling(train)
        features = self._encode(train)
        if len(features) < self.options.n_components:
            raise DataError(f"{len(features)} rows cannot fit {self.options.n_components} mixture components")
        mixture = self._run_em(features, progress)
        self.params.update(
            weights=mixture.weights_, means=mixture.means_, covariances=mixture.covariances_
        )
        self.metadata = {
            "training_rows": len(frame),
            "holdout_rows": len(holdout) if holdout is not None else 0,
            "training_data_fingerprint": fingerprint(frame),
            "converged": bool(mixture.converged_),
            "em_iterations": int(mixture.n_iter_),
            "log_likelihood_per_row": float(mixture.lower_bound_),
        }
        self.reference = TrainingReference.build(self.schema, train, holdout) if holdout is not None else None
        return self

    def _split_holdout(self, frame: Any) -> tuple[Any, Any]:
        """(rows EM sees, held-out rows or None): a seeded random sample of `holdout_fraction` of the rows."""
        n_holdout = round(self.options.holdout_fraction * len(frame))
        if n_holdout < MIN_HOLDOUT_ROWS:
            if self.options.holdout_fraction > 0:
                log.warning(
                    "%d rows x holdout_fraction %g leaves fewer than %d held-out rows: fitting on every row and "
                    "keeping no training reference (the memorisation policy will refuse this model)",
                    len(frame), self.options.holdout_fraction, MIN_HOLDOUT_ROWS,
                )
            return frame, None
        held = np.zeros(len(frame), dtype=bool)
        held[np.random.default_rng(self.options.seed).choice(len(frame), n_holdout, replace=False)] = True
        return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)

    def training_reference(self) -> TrainingReference | None:
        return self.reference

    def _set_scaling(self, frame: Any) -> None:
        numeric = [c.name for c in self.schema.columns if c.numeric]
        values = frame[numeric].to_numpy(dtype=np.float64)
        scale = values.std(axis=0) if numeric else np.zeros(0)
        self.params["center"] = values.mean(axis=0) if numeric else np.zeros(0)
        self.params["scale"] = np.where(scale > 0, scale, 1.0)  # a constant column stays constant

    def _run_em(self, features: np.ndarray, progress: Progress | None) -> Any:
        """EM one iteration per call (warm start), so progress is real and convergence is sklearn's test."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        opts = self.options
        mixture = GaussianMixture(
            opts.n_components, covariance_type="full", reg_covar=COVARIANCE_RIDGE,
            max_iter=1, warm_start=True, random_state=opts.seed,
        )
        previous = -np.inf
        for iteration in range(1, opts.max_iter + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                mixture.fit(features)
            if progress:
                progress(iteration, opts.max_iter, f"log-likelihood {mixture.lower_bound_:.4f}")
            if abs(mixture.lower_bound_ - previous) < opts.tol:
                break
            previous = mixture.lower_bound_
        if progress:
            progress(iteration, iteration, "converged" if iteration < opts.max_iter else "stopped at max_iter")
        mixture.converged_ = iteration < opts.max_iter
        mixture.n_iter_ = iteration
        return mixture

    # -- encoding -------------------------------------------------------------------------------------------

    def _encode(self, frame: Any) -> np.ndarray:
        blocks = [((frame[self._numeric_names()].to_numpy(np.float64) - self.params["center"]) / self.params["scale"])]
        for col in self._categorical_columns():
            values = frame[col.name].to_numpy()
            blocks.append(np.stack([values == c for c in col.categories], axis=1).astype(np.float64))
        return np.concatenate(blocks, axis=1)

    def _decode(self, features: np.ndarray) -> Any:
        import pandas as pd

        numeric = self._numeric_names()
        data: dict[str, Any] = dict(zip(numeric, (features[:, : len(numeric)] * self.params["scale"] + self.params["center"]).T))
        offset = len(numeric)
        for col in self._categorical_columns():
            width = len(col.categories)
            picks = features[:, offset : offset + width].argmax(axis=1)
            data[col.name] = np.asarray(col.categories, dtype=object)[picks]
            offset += width
        return self.schema.restore(pd.DataFrame(data))

    def _numeric_names(self) -> list[str]:
        return [c.name for c in self.schema.columns if c.numeric]

    def _categorical_columns(self) -> list[Any]:
        return [c for c in self.schema.columns if not c.numeric]

    def _feature_slice(self, name: str) -> slice:
        numeric = self._numeric_names()
        if name in numeric:
            i = numeric.index(name)
            return slice(i, i + 1)
        offset = len(numeric)
        for col in self._categorical_columns():
            if col.name == name:
                return slice(offset, offset + len(col.categories))
            offset += len(col.categories)
        raise RequestError(f"unknown column {name!r}")

    # -- generation -----------------------------------------------------------------------------------------

    def validate_request(self, request: Request) -> None:
        super().validate_request(request)
        self._require_fitted()
        for name, value in request.conditions.items():
            self.schema.check_value(name, value)

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        import torch

        weights, means, chols = self._mixture(request.conditions, context.device)
        free, fixed_values = self._condition_layout(request.conditions)
        gen = context.torch_generator()
        comps = torch.multinomial(weights, request.n, replacement=True, generator=gen)
        noise = torch.randn(request.n, means.shape[1], generator=gen, device=context.device, dtype=torch.float64)
        free_values = torch.empty_like(noise)
        for k in range(weights.shape[0]):  # one matmul per component, not a (n, d, d) gather
            rows = comps == k
            free_values[rows] = means[k] + noise[rows] @ chols[k].T
        features = np.zeros((request.n, self._width()))
        features[:, free] = free_values.cpu().numpy()
        for index, value in fixed_values.items():
            features[:, index] = value
        frame = self._decode(features)
        for name, value in request.conditions.items():  # exact, not just most likely, for conditioned columns
            frame[name] = self.schema.check_value(name, value)
        return [TableOutput(self.schema.restore(frame))]

    def _width(self) -> int:
        return self.params["means"].shape[1]

    def _condition_layout(self, conditions: dict[str, Any]) -> tuple[np.ndarray, dict[int, float]]:
        """Indices of the free features, and the fixed value of each conditioned feature."""
        fixed: dict[int, float] = {}
        for name, value in conditions.items():
            col = self.schema.column(name)
            where = self._feature_slice(name)
            if col.numeric:
                i = self._numeric_names().index(name)
                fixed[where.start] = (float(value) - self.params["center"][i]) / self.params["scale"][i]
            else:
                hot = col.categories.index(self.schema.check_value(name, value))
                fixed.update({where.start + j: float(j == hot) for j in range(len(col.categories))})
        free = np.array([i for i in range(self._width()) if i not in fixed], dtype=np.int64)
        return free, fixed

    def _mixture(self, conditions: dict[str, Any], device: str) -> tuple[Any, Any, Any]:
        """Component weights, means and Cholesky factors over the free features, given the conditions."""
        import torch

        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        pi, mu, cov = as_t(self.params["weights"]), as_t(self.params["means"]), as_t(self.params["covariances"])
        free, fixed = self._condition_layout(conditions)
        if not fixed:
            return pi, mu, torch.linalg.cholesky(cov)
        f_idx, c_idx = as_t(free).long(), torch.as_tensor(sorted(fixed), device=device)
        x_c = as_t([fixed[i] for i in sorted(fixed)])
        s_cc = cov[:, c_idx][:, :, c_idx]
        s_fc = cov[:, f_idx][:, :, c_idx]
        diff = x_c - mu[:, c_idx]
        gain = torch.linalg.solve(s_cc, s_fc.transpose(1, 2)).transpose(1, 2)  # S_fc S_cc^-1
        cond_mu = mu[:, f_idx] + (gain @ diff.unsqueeze(-1)).squeeze(-1)
        cond_cov = cov[:, f_idx][:, :, f_idx] - gain @ s_fc.transpose(1, 2)
        log_lik = torch.distributions.MultivariateNormal(mu[:, c_idx], s_cc).log_prob(x_c)
        post = torch.softmax(torch.log(pi) + log_lik, dim=0)
        cond_cov = (cond_cov + cond_cov.transpose(1, 2)) / 2  # symmetrise away round-off before Cholesky
        return post, cond_mu, torch.linalg.cholesky(cond_cov)

    def _require_fitted(self) -> None:
        if self.schema is None or "means" not in self.params:
            raise RequestError("this GMM has not been fitted; call fit() or load a saved model")

    # -- persistence ----------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "options": self.options.model_dump(mode="json"),
            "schema": self.schema.to_json() if self.schema else None,
            "license": self.options.license,
            "data_source": self.options.data_source,
            **self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v) for k, v in self.params.items()}, str(path / WEIGHTS_NAME))
        write_manifest(path, type(self), self.config())
        TrainingReference.save_or_clear(self.reference, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GMMFamily:
        path = Path(path)
        manifest = cls.read_own_manifest(path)
        try:
            model = cls(manifest.get("options"))
        except ConfigError as exc:
            raise ModelLoadError(f"{path / MANIFEST_NAME} is corrupted: {exc}") from None
        try:
            model.schema = TableSchema.from_json(manifest["schema"])
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path / MANIFEST_NAME} is corrupted: bad schema ({exc})") from None
        model.params = _read_weights(path / WEIGHTS_NAME)
        model.metadata = {k: manifest[k] for k in ("training_rows", "training_data_fingerprint", "converged", "em_iterations", "log_likelihood_per_row", "holdout_rows") if k in manifest}
        model._check_shapes(path)
        model.reference = TrainingReference.load(path)
        model.source_path = path
        model.weights_digest = weights_digest(path / WEIGHTS_NAME)
        return model

    def _check_shapes(self, path: Path) -> None:
        width = len(self._numeric_names()) + sum(len(c.categories) for c in self._categorical_columns())
        k, numeric = self.params["means"].shape[0] if self.params["means"].ndim else 0, len(self._numeric_names())
        expected = {"weights": (k,), "means": (k, width), "covariances": (k, width, width),
                    "center": (numeric,), "scale": (numeric,)}
        for name, shape in expected.items():
            if self.params[name].shape != shape:
                raise ModelLoadError(f"{path / WEIGHTS_NAME}: {name} has shape {self.params[name].shape}, expected {shape}")


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ModelLoadError(f"weights file {path} is missing")
    try:
        params = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise ModelLoadError(f"weights file {path} is truncated or corrupted: {exc}") from None
    missing = {"weights", "means", "covariances", "center", "scale"} - set(params)
    if missing:
        raise ModelLoadError(f"weights file {path} lacks tensors {sorted(missing)}")
    return params
