"""The reversible table encoding that the neural table families (GAN, VAE) learn on, and what they share
around it: the conditional vector with training-by-sampling, conditioned rejection sampling, and the
per-category coverage report that diagnoses mode collapse.

The family base that uses it is `gensdk.neural_table.NeuralTableFamily`.

The encoding is CTGAN's (Xu et al., 2019, "Modeling Tabular Data using Conditional GAN"):

* a continuous, integer or datetime column is normalised per *mode*: a Bayesian Gaussian mixture (scikit-
  learn's, Dirichlet-process prior) finds its modes; a value becomes a one-hot of its mode and a scalar
  alpha = (x - mean_k) / (4 std_k) in (-1, 1). A multi-modal column (capital gains: a spike at 0 and a long
  tail) is then easy for a network, where a min-max scaled one squashes the spike into a few bits;
* a categorical or boolean column is one-hot;
* a column with missing cells gets one more one-hot entry, "missing", so generated tables have missing cells
  at the training rate, and decoding restores them as NaN.

    schema = TableSchema.infer(frame, allow_missing=True, allow_datetime=True)
    transform = TableTransform.fit(frame, schema, seed=0)
    x = transform.encode(frame, rng)          # (rows, transform.width) float32
    back = transform.decode(x)                # same columns, dtypes, ranges, missing cells

`spans` tells a network which slices of a row are a tanh scalar and which are a softmax block.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from gensdk.errors import DataError, GenerationError, RequestError
from gensdk.tabular import ColumnSpec, TableSchema

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ConditionSampler", "Span", "TableTransform", "check_conditions", "conditioned_rows", "coverage_report",
           "sample_rows", "split_holdout"]

log = logging.getLogger("gensdk.tabular_transform")

# CTGAN's settings: at most 10 modes per column, and a mode weighing under 0.5% is dropped (its values go to
# the nearest kept mode) so the network is not asked to learn modes that hold a handful of rows.
MAX_MODES = 10
MIN_MODE_WEIGHT = 0.005
# Fitting the mixture on more than this many values gains nothing measurable and costs seconds per column.
MAX_FIT_ROWS = 10_000
# alpha = (x - mean) / (ALPHA_SCALE * std): 4 standard deviations cover 99.99% of a mode inside (-1, 1).
ALPHA_SCALE = 4.0
MISSING = "<missing>"


@dataclass
class Span:
    """A slice of an encoded row: one tanh scalar, or one softmax block (modes or categories)."""

    column: str
    start: int
    width: int
    activation: Literal["tanh", "softmax"]

    @property
    def stop(self) -> int:
        return self.start + self.width


@dataclass
class ColumnCodec:
    """How one column is encoded: its mixture modes (numbers, dates) or its categories."""

    name: str
    numeric: bool
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    categories: list[Any] = field(default_factory=list)
    has_missing: bool = False

    @property
    def one_hot_width(self) -> int:
        return (len(self.means) if self.numeric else len(self.categories)) + int(self.has_missing)


class TableTransform:
    def __init__(self, schema: TableSchema, codecs: list[ColumnCodec]):
        self.schema = schema
        self.codecs = codecs
        self.spans: list[Span] = []
        offset = 0
        for codec in codecs:
            if codec.numeric:
                self.spans.append(Span(codec.name, offset, 1, "tanh"))
                offset += 1
            self.spans.append(Span(codec.name, offset, codec.one_hot_width, "softmax"))
            offset += codec.one_hot_width
        self.width = offset

    # -- fitting --------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, frame: pd.DataFrame, schema: TableSchema, seed: int = 0, max_modes: int = MAX_MODES) -> TableTransform:
        """Fit a mixture per numeric column; reject columns that carry nothing to learn."""
        codecs = []
        for col in schema.columns:
            values = frame[col.name]
            present = values.dropna()
            if present.empty:
                raise DataError(f"column {col.name!r} has no values (every row is missing); drop it")
            if present.nunique() < 2 and not col.missing:
                raise DataError(f"column {col.name!r} holds one value ({present.iloc[0]}) in every row: it carries "
                                "nothing to learn; drop it and add it back to the generated rows")
            if col.numeric or col.kind == "datetime":
                codec = _fit_modes(col, _as_numbers(present, col), seed, max_modes)
            else:
                codec = ColumnCodec(col.name, False, categories=list(col.categories))
            codec.has_missing = bool(col.missing)
            codecs.append(codec)
        return cls(schema, codecs)

    # -- encoding -------------------------------------------------------------------------------------------

    def encode(self, frame: pd.DataFrame, rng: np.random.Generator | None = None) -> np.ndarray:
        """Rows as float32 vectors. With `rng` each value's mode is drawn from its posterior (CTGAN's
        training encoding, which keeps a value between two modes from always landing in one); without, the
        most likely mode. Missing cells encode as the "missing" entry; an unknown category is a DataError."""
        missing_columns = [c for c in self.schema.names if c not in frame.columns]
        if missing_columns:
            raise DataError(f"the table lacks the training columns {missing_columns}")
        out = np.zeros((len(frame), self.width), np.float32)
        rows = np.arange(len(frame))
        spans = iter(self.spans)
        for codec, col in zip(self.codecs, self.schema.columns):
            values = frame[codec.name]
            absent = values.isna().to_numpy()
            if absent.any() and not codec.has_missing:
                codec_missing_hint = "" if col.missing else " (the training data had none in this column)"
                raise DataError(f"column {codec.name!r} has {int(absent.sum())} missing cells{codec_missing_hint}")
            if codec.numeric:
                alpha_span, mode_span = next(spans), next(spans)
                x = np.zeros(len(frame))
                x[~absent] = _as_numbers(values[~absent], col)
                alpha, mode = _alpha_and_mode(codec, x, rng)
                mode[absent] = len(codec.means)
                alpha[absent] = 0.0
                out[:, alpha_span.start] = alpha
                out[rows, mode_span.start + mode] = 1.0
            else:
                span = next(spans)
                out[rows, span.start + self.category_codes(codec, values, absent)] = 1.0
        return out

    def category_codes(self, codec: ColumnCodec, values: pd.Series, absent: np.ndarray) -> np.ndarray:
        """Index of each value among the codec's categories (the missing entry is the last)."""
        lookup = {str(c): i for i, c in enumerate(codec.categories)}
        codes = np.array([lookup.get(str(v), -1) for v in values.to_numpy()], dtype=np.int64)
        codes[absent] = len(codec.categories)
        unknown = (codes < 0) & ~absent
        if unknown.any():
            value = values.to_numpy()[np.flatnonzero(unknown)[0]]
            raise DataError(f"column {codec.name!r} has the category {value!r}, which the training data did not "
                            f"have ({int(unknown.sum())} rows); known: {', '.join(map(repr, codec.categories[:20]))}")
        return codes

    def decode(self, x: np.ndarray, allow_missing: bool = True) -> pd.DataFrame:
        """Encoded rows (one-hot or scores: the largest entry wins) back to a table with the training
        columns, dtypes and ranges. `allow_missing=False` never picks the missing entry (imputation)."""
        import pandas as pd

        data: dict[str, Any] = {}
        spans = iter(self.spans)
        for codec in self.codecs:
            if codec.numeric:
                alpha = np.clip(x[:, next(spans).start], -1, 1)
                block = x[:, next(spans).start :][:, : codec.one_hot_width]
                mode = _argmax(block, codec.has_missing and not allow_missing)
                known = np.minimum(mode, len(codec.means) - 1)
                value = alpha * ALPHA_SCALE * np.asarray(codec.stds)[known] + np.asarray(codec.means)[known]
                data[codec.name] = np.where(mode == len(codec.means), np.nan, value)
            else:
                span = next(spans)
                pick = _argmax(x[:, span.start : span.stop], codec.has_missing and not allow_missing)
                data[codec.name] = np.asarray([*codec.categories, None], dtype=object)[pick]
        return self.schema.restore(pd.DataFrame(data))

    def span_of(self, column: str, activation: str = "softmax") -> Span:
        return next(s for s in self.spans if s.column == column and s.activation == activation)

    # -- persistence ----------------------------------------------------------------------------------------

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.codecs]

    @classmethod
    def from_json(cls, schema: TableSchema, data: list[dict[str, Any]]) -> TableTransform:
        return cls(schema, [ColumnCodec(**c) for c in data])


def _as_numbers(values: pd.Series, col: ColumnSpec) -> np.ndarray:
    if col.kind == "datetime":
        from gensdk.tabular import _epoch_seconds

        return _epoch_seconds(values).to_numpy(np.float64)
    try:
        return values.to_numpy(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"column {col.name!r} should hold numbers; it holds {values.iloc[0]!r}") from None


def _fit_modes(col: ColumnSpec, values: np.ndarray, seed: int, max_modes: int) -> ColumnCodec:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    if len(values) > MAX_FIT_ROWS:
        values = np.random.default_rng(seed).choice(values, MAX_FIT_ROWS, replace=False)
    n_modes = min(max_modes, len(np.unique(values)))
    mixture = BayesianGaussianMixture(
        n_components=n_modes, weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=0.001, max_iter=100, random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(values.reshape(-1, 1))
    keep = mixture.weights_ > MIN_MODE_WEIGHT
    # A floor on std: a mode on one repeated integer would otherwise have std ~0 and alpha would explode.
    floor = max(float(values.max() - values.min()) * 1e-4, 1e-6)
    stds = np.maximum(np.sqrt(mixture.covariances_.reshape(-1)), floor)
    weights = mixture.weights_[keep] / mixture.weights_[keep].sum()
    return ColumnCodec(col.name, True, mixture.means_.reshape(-1)[keep].tolist(), stds[keep].tolist(), weights.tolist())


def _alpha_and_mode(codec: ColumnCodec, x: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    means, stds = np.asarray(codec.means), np.asarray(codec.stds)
    log_post = np.log(np.asarray(codec.weights)) - 0.5 * ((x[:, None] - means) / stds) ** 2 - np.log(stds)
    if rng is None:
        mode = log_post.argmax(axis=1)
    else:  # Gumbel-max: a draw from the posterior, vectorised
        mode = (log_post + rng.gumbel(size=log_post.shape)).argmax(axis=1)
    alpha = np.clip((x - means[mode]) / (ALPHA_SCALE * stds[mode]), -0.99, 0.99)
    return alpha, mode


def _argmax(block: np.ndarray, exclude_last: bool) -> np.ndarray:
    if exclude_last:
        block = block[:, :-1]
    return block.argmax(axis=1)


# -- the conditional vector -----------------------------------------------------------------------------------


class ConditionSampler:
    """CTGAN's conditional vector and training-by-sampling.

    The conditional vector is one one-hot block per categorical column, all zero but one entry: "generate a
    row whose column j is category c". In training, j is drawn uniformly and c by its *log* frequency, and the
    real rows shown to the critic are drawn among those with category c, so rare categories are trained on
    as often as a log-flattened share of the batch: the cure for a generator that ignores them (mode
    collapse). For unconditional generation, c is drawn by its true frequency so the output keeps the
    training distribution.

    `focus=(column, share)` (a GAN with a declared target): in training, `share` of the conditional vectors ask
    for a category of that column instead of a uniformly chosen column's; for unconditional generation every
    row is drawn label first: the column's category by its true frequency, then the row given it. The model
    then learns each label's rows, the relation a classifier trained on synthetic rows depends on, as the
    first thing rather than one column in many; and the label's share comes out exact.
    """

    def __init__(self, transform: TableTransform, x: np.ndarray | None = None, focus: tuple[str, float] | None = None):
        self.columns = [(c, transform.span_of(c.name)) for c in transform.codecs if not c.numeric]
        self.offsets = np.cumsum([0] + [span.width for _, span in self.columns])
        self.width = int(self.offsets[-1])
        self.rows_by_category: list[list[np.ndarray]] = []
        names = [c.name for c, _ in self.columns]
        # (index among the categorical columns, share); a numeric or absent focus column is no focus
        self.focus = (names.index(focus[0]), focus[1]) if focus and focus[0] in names and focus[1] > 0 else None
        if x is not None:
            self.fit(x)

    def fit(self, x: np.ndarray) -> None:
        self.frequency, self.train_prob, self.rows_by_category = [], [], []
        for _, span in self.columns:
            codes = x[:, span.start : span.stop].argmax(axis=1)
            counts = np.bincount(codes, minlength=span.width)
            self.rows_by_category.append([np.flatnonzero(codes == k) for k in range(span.width)])
            self.frequency.append(counts / len(x))
            # log(count + 1): a category with 100x fewer rows is asked for only ~2-3x less often.
            self.train_prob.append(np.log(counts + 1) / np.log(counts + 1).sum())

    def state(self) -> np.ndarray:
        """The category frequencies, flat: what generation needs after a save/load round trip."""
        return np.concatenate(self.frequency) if self.columns else np.zeros(0)

    def set_state(self, flat: np.ndarray) -> None:
        self.frequency = [flat[self.offsets[j] : self.offsets[j + 1]] for j in range(len(self.columns))]

    def sample_train(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cond vectors, the chosen one-hot entry of each, indices of real rows having that category)."""
        column = self._columns(batch, rng)
        cond = np.zeros((batch, self.width), np.float32)
        entry = np.empty(batch, np.int64)
        rows = np.empty(batch, np.int64)
        for j in np.unique(column):
            chosen = np.flatnonzero(column == j)
            category = rng.choice(len(self.train_prob[j]), size=len(chosen), p=self.train_prob[j])
            entry[chosen] = self.offsets[j] + category
            for k in np.unique(category):
                pool = self.rows_by_category[j][k]
                take = chosen[category == k]
                rows[take] = pool[rng.integers(len(pool), size=len(take))]
        cond[np.arange(batch), entry] = 1.0
        return cond, entry, rows

    def _columns(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        """The categorical column each conditional vector asks about: uniformly, or the focus column's share."""
        column = rng.integers(len(self.columns), size=batch)
        if self.focus is not None:
            column[rng.random(batch) < self.focus[1]] = self.focus[0]
        return column

    def sample_frequency(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(cond vectors, chosen entries): a column uniformly, a category by its frequency, no rows picked.
        What differentially private training conditions generated rows on: a function of the category
        frequencies alone, never of the rows in a batch."""
        cond = np.zeros((batch, self.width), np.float32)
        entry = np.zeros(batch, np.int64)
        if not self.columns:
            return cond, entry
        column = self._columns(batch, rng)
        for j in np.unique(column):
            chosen = np.flatnonzero(column == j)
            probs = np.asarray(self.frequency[j], dtype=np.float64)
            entry[chosen] = self.offsets[j] + rng.choice(len(probs), size=len(chosen), p=probs / probs.sum())
        cond[np.arange(batch), entry] = 1.0
        return cond, entry

    def from_rows(self, rows: Any, rng: np.random.Generator) -> Any:
        """Cond vectors of encoded rows (torch): each row's own category in a uniformly chosen categorical
        column. Training-by-sampling picks rows *for* a category, which Poisson sampling (DP) forbids; this
        asks, of rows sampled without regard to category, for what they are, which has the distribution of
        `sample_frequency`."""
        import torch

        cond = torch.zeros(len(rows), self.width, device=rows.device)
        if not self.columns or not len(rows):
            return cond
        entries = torch.stack([rows[:, span.start : span.stop].argmax(1) + int(self.offsets[j])
                               for j, (_, span) in enumerate(self.columns)], dim=1)
        column = torch.as_tensor(self._columns(len(rows), rng), device=rows.device)
        cond[torch.arange(len(rows), device=rows.device), entries.gather(1, column[:, None]).squeeze(1)] = 1.0
        return cond

    def sample_original(self, batch: int, gen: Any) -> Any:
        """Cond vectors for unconditional generation (torch, from the request's generator)."""
        import torch

        cond = torch.zeros(batch, self.width)
        if not self.columns:
            return cond
        if self.focus is not None:
            column = torch.full((batch,), self.focus[0])
        else:
            column = torch.randint(len(self.columns), (batch,), generator=gen)
        for j in range(len(self.columns)):
            chosen = torch.nonzero(column == j).flatten()
            if len(chosen):
                probs = torch.as_tensor(self.frequency[j], dtype=torch.float32)
                category = torch.multinomial(probs, len(chosen), replacement=True, generator=gen)
                cond[chosen, int(self.offsets[j]) + category] = 1.0
        return cond

    def entry(self, column: str, category: Any) -> int:
        """The cond-vector index meaning "column == category" (validated by the schema first)."""
        for j, (codec, _) in enumerate(self.columns):
            if codec.name == column:
                return int(self.offsets[j]) + [str(c) for c in codec.categories].index(str(category))
        raise RequestError(f"column {column!r} is not categorical: only categorical and boolean columns can be conditioned on")


# -- conditions, coverage -------------------------------------------------------------------------------------


def check_conditions(schema: TableSchema, conditions: dict[str, Any]) -> dict[str, Any]:
    """Conditions in the columns' own types; only categorical and boolean columns can be conditioned on."""
    checked = {}
    for name, value in conditions.items():
        col = schema.column(name)
        if col.numeric or col.kind == "datetime":
            raise RequestError(f"condition on {col.kind} column {name!r}: this family conditions on categorical "
                               "and boolean columns only (filter the generated rows for numbers)")
        checked[name] = schema.check_value(name, value)
    return checked


def conditioned_rows(sample: Callable[[int, int], pd.DataFrame], conditions: dict[str, Any], n: int,
                     max_rounds: int = 50) -> pd.DataFrame:
    """`n` rows satisfying every condition, by rejection from `sample(count, round)` (which the families steer
    towards the conditions with their conditional vector). Each round draws what the acceptance rate seen so
    far says the missing rows need, so a rare combination is reached in a few larger rounds rather than many
    small ones. Seeded rounds keep it deterministic; a condition the model almost never meets is a
    GenerationError, not a silent shortfall or a loop without end."""
    import pandas as pd

    kept: list[pd.DataFrame] = []
    have = drawn = 0
    for round_ in range(max_rounds):
        count = _rows_to_draw(n - have, have, drawn)
        frame = sample(count, round_)
        drawn += count
        for name, value in conditions.items():
            frame = frame[frame[name].astype(str) == str(value)]
        kept.append(frame)
        have += len(frame)
        if have >= n:
            return pd.concat(kept, ignore_index=True).iloc[:n].reset_index(drop=True)
    wanted = ", ".join(f"{k}={v!r}" for k, v in conditions.items())
    raise GenerationError(f"the model produced only {have} of {n} rows with {wanted} in {max_rounds} rounds "
                          f"({drawn} rows drawn); the combination is too rare in what it learned")


# One rejection round draws at most this many rows, so memory stays bounded however rare a combination is.
MAX_DRAW = 200_000


def _rows_to_draw(missing: int, accepted: int, drawn: int) -> int:
    """Rows to draw for `missing` more: twice what is missing at first; then what the acceptance rate so far
    (taken as half a row when none was accepted, so draws grow geometrically) needs, with a quarter spare."""
    if drawn == 0:
        return max(missing, 64) * 2
    rate = max(accepted, 0.5) / drawn
    return int(min(MAX_DRAW, max(64, math.ceil(1.25 * missing / rate))))


def coverage_report(schema: TableSchema, real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, Any]:
    """Mode-collapse diagnostic: per categorical column, which training categories the unconditional samples
    produce, and the total variation distance between the real and synthetic category shares."""
    columns = {}
    for col in schema.columns:
        if col.numeric or col.kind == "datetime":
            continue
        real_share = real[col.name].astype(str).value_counts(normalize=True)
        synth_share = synthetic[col.name].astype(str).value_counts(normalize=True)
        produced = [str(c) for c in col.categories if str(c) in synth_share.index]
        absent = [str(c) for c in col.categories if str(c) not in synth_share.index]
        tvd = 0.5 * float(real_share.sub(synth_share, fill_value=0).abs().sum())
        columns[col.name] = {"categories": len(col.categories), "covered": len(produced),
                             "coverage": len(produced) / max(len(col.categories), 1), "not_generated": absent[:50],
                             "total_variation": round(tvd, 4)}
    covered = [c["coverage"] for c in columns.values()]
    return {"mean_coverage": float(np.mean(covered)) if covered else 1.0, "rows": len(synthetic), "columns": columns}


def sample_rows(raw: Any, spans: list[Span], gen: Any) -> Any:
    """Generation-time output layer (CPU, seeded): tanh scalars, and one category drawn per softmax block
    from its logits (Gumbel-max with the request's generator, so the same seed gives the same rows)."""
    import torch

    out = torch.empty_like(raw)
    for span in spans:
        block = raw[:, span.start : span.stop]
        if span.activation == "tanh":
            out[:, span.start : span.stop] = torch.tanh(block)
            continue
        uniform = torch.rand(block.shape, generator=gen).clamp_(1e-10, 1 - 1e-10)
        pick = (block - torch.log(-torch.log(uniform))).argmax(dim=1)
        out[:, span.start : span.stop] = torch.nn.functional.one_hot(pick, span.width).to(raw.dtype)
    return out


def split_holdout(frame: pd.DataFrame, fraction: float, seed: int, minimum: int = 30) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(rows the network trains on, held-out rows or None): a seeded random `fraction` of the rows, kept out of
    training for early stopping and as the memorisation reference's fresh rows. Fewer than `minimum` held-out
    rows say too little about either: then every row is trained on."""
    n_holdout = round(fraction * len(frame))
    if n_holdout < minimum or len(frame) - n_holdout < minimum:
        return frame.reset_index(drop=True), None
    held = np.zeros(len(frame), dtype=bool)
    held[np.random.default_rng(seed).choice(len(frame), n_holdout, replace=False)] = True
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
