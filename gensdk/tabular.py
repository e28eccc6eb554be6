"""Tables in and out: reading CSVs with clear errors, schema inference, restoring dtypes and ranges.

The schema is what a table family saves beside its weights, so that generated rows come back with the
training data's column order, dtypes, categories and value ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from gensdk._canonical import sha256_hex
from gensdk.errors import DataError, RequestError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ColumnSpec", "TableSchema", "fingerprint", "read_table"]

ColumnKind = Literal["continuous", "integer", "categorical", "boolean", "datetime"]

# A text column where most values are distinct is an identifier (names, ids), not a category to model.
MAX_CATEGORIES = 500
# read_csv leaves dates as text: "2024-03-01", "2024-03-01 12:30", "2024-03-01T12:30:00Z".
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?")


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a CSV (or pass a DataFrame through) and reject what no table model can learn from."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        frame = _read_csv(Path(source))
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"table {_name(source)} is empty ({frame.shape[0]} rows, {frame.shape[1]} columns)")
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"table {_name(source)} has duplicate column names: {duplicated}")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        return pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"data file {path} is not a readable CSV: {exc}") from None


def _name(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else "(DataFrame)"


def fingerprint(frame: pd.DataFrame) -> str:
    """A digest of the training data: the same rows and columns in the same order give the same digest."""
    import pandas as pd

    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return sha256_hex("\x1f".join(map(str, frame.columns)).encode() + row_hashes.tobytes())


@dataclass
class ColumnSpec:
    name: str
    kind: ColumnKind
    dtype: str
    minimum: float | None = None
    maximum: float | None = None
    categories: list[Any] = field(default_factory=list)
    # Training rows without a value (only with infer(allow_missing=True)); generated tables have them too.
    missing: int = 0
    # Declared roles: sensitive attributes (for the fairness audits) and the prediction target.
    sensitive: bool = False
    target: bool = False
    # Datetime columns: minimum/maximum are epoch seconds; the format says the unit values are rounded to
    # (days, minutes, seconds), and a column read as text is written back in it.
    datetime_format: str | None = None

    @property
    def numeric(self) -> bool:
        return self.kind in ("continuous", "integer")


@dataclass
class TableSchema:
    columns: list[ColumnSpec]

    @classmethod
    def infer(cls, frame: pd.DataFrame, *, allow_missing: bool = False, allow_datetime: bool = False,
              sensitive: Sequence[str] = (), target: str | None = None) -> TableSchema:
        """Column kinds, dtypes, ranges and categories. By default missing cells and dates are refused (the
        GMM models neither); families that model them (GAN, VAE) pass allow_missing / allow_datetime."""
        if not allow_missing:
            _reject_missing(frame)
        if allow_missing or allow_datetime:
            columns = [_infer_lenient(frame[name], str(name), allow_datetime) for name in frame.columns]
        else:
            columns = [_infer_column(frame[name], str(name)) for name in frame.columns]
        for role, names in (("sensitive", list(sensitive)), ("target", [target] if target else [])):
            for name in names:
                spec = next((c for c in columns if c.name == name), None)
                if spec is None:
                    raise DataError(f"{role} column {name!r} is not in the table; it has: {', '.join(map(str, frame.columns))}")
                setattr(spec, role, True)
        return cls(columns)

    @property
    def target(self) -> str | None:
        return next((c.name for c in self.columns if c.target), None)

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise RequestError(f"unknown column {name!r}; the table has: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_json(self) -> list[dict[str, Any]]:
        # Shallow per field (asdict deep-copies recursively): the engine digests this on every request.
        names = [f.name for f in fields(ColumnSpec)]
        return [{name: _plain(getattr(c, name)) for name in names} for c in self.columns]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> TableSchema:
        return cls([ColumnSpec(**c) for c in data])

    def check_value(self, name: str, value: Any) -> Any:
        """Validate one condition value against the column; returns it in the column's own type."""
        col = self.column(name)
        if col.kind == "datetime":
            raise RequestError(f"column {name!r} holds dates: conditions on dates are not supported")
        if col.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"condition on numeric column {name!r} must be a number, not {value!r}")
            return float(value)
        matches = [c for c in col.categories if c == value or str(c) == str(value)]
        if not matches:
            shown = ", ".join(map(repr, col.categories[:20]))
            raise RequestError(f"column {name!r} has no category {value!r}; known: {shown}")
        return matches[0]

    def restore(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Round integers, clip to the training range, cast back to the training dtypes."""
        for col in self.columns:
            if col.kind == "datetime":
                frame[col.name] = _restore_dates(frame[col.name], col)
                continue
            if col.numeric:
                values = frame[col.name].clip(col.minimum, col.maximum)
                frame[col.name] = values.round() if col.kind == "integer" else values
            if col.kind != "categorical":
                frame[col.name] = frame[col.name].astype(col.dtype)
        return frame[self.names]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _reject_missing(frame: pd.DataFrame) -> None:
    missing = frame.isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        listed = ", ".join(f"{name!r} ({count} rows)" for name, count in missing.items())
        raise DataError(f"missing values in {listed}; drop or fill them first (e.g. frame.dropna())")


def _infer_column(series: pd.Series, name: str) -> ColumnSpec:
    import pandas as pd

    dtype = str(series.dtype)
    if pd.api.types.is_bool_dtype(series):
        return ColumnSpec(name, "boolean", dtype, categories=[False, True])
    if pd.api.types.is_integer_dtype(series):
        return ColumnSpec(name, "integer", dtype, float(series.min()), float(series.max()))
    if pd.api.types.is_float_dtype(series):
        return ColumnSpec(name, "continuous", dtype, float(series.min()), float(series.max()))
    if pd.api.types.is_datetime64_any_dtype(series):
        raise DataError(f"column {name!r} holds dates, which table families do not model yet; convert or drop it")
    return _categorical(series, name, dtype)


def _infer_lenient(series: pd.Series, name: str, allow_datetime: bool) -> ColumnSpec:
    """Inference on the values present, for families that model missing cells and dates (GAN, VAE)."""
    import pandas as pd

    present = series.dropna()
    if present.empty:
        raise DataError(f"column {name!r} has no values (every row is missing); drop it")
    dtype = str(series.dtype)
    if allow_datetime and (pd.api.types.is_datetime64_any_dtype(series) or _all_iso_dates(present)):
        seconds = _epoch_seconds(present)
        # The finest unit the values use: dates stay dates, minutes stay minutes after generation.
        unit = next(u for u in (86400, 60, 1) if u == 1 or (seconds % u == 0).all())
        spec = ColumnSpec(name, "datetime", dtype, float(seconds.min()), float(seconds.max()), datetime_format=_DATE_FORMATS[unit])
    elif pd.api.types.is_float_dtype(series) and len(present) < len(series) and (present == present.round()).all():
        # Integers with gaps come back from read_csv as floats; keep them integers, the gaps as NaN.
        spec = ColumnSpec(name, "integer", dtype, float(present.min()), float(present.max()))
    elif series.dtype == object and all(isinstance(v, bool) for v in present.head(1000)):
        spec = ColumnSpec(name, "boolean", dtype, categories=[False, True])
    elif pd.api.types.is_datetime64_any_dtype(series):
        return _infer_column(series, name)  # raises: dates not allowed
    else:
        spec = _infer_column(present.astype(series.dtype), name)
        spec.dtype = dtype
    spec.missing = int(series.isna().sum())
    return spec


_DATE_FORMATS = {86400: "%Y-%m-%d", 60: "%Y-%m-%d %H:%M", 1: "%Y-%m-%d %H:%M:%S"}


def _all_iso_dates(present: Any) -> bool:
    sample = present.head(1000)
    return all(isinstance(v, str) and _ISO_DATE.fullmatch(v) for v in sample)


def _epoch_seconds(values: Any) -> Any:
    import pandas as pd

    stamps = pd.to_datetime(values, format="ISO8601", utc=False) if not pd.api.types.is_datetime64_any_dtype(values) else values
    return (stamps - pd.Timestamp(0)).dt.total_seconds()


def _restore_dates(seconds: Any, col: ColumnSpec) -> Any:
    """Epoch seconds (clipped to the training range, whole seconds) back to dates, or to the text they were."""
    import pandas as pd

    unit = {fmt: unit for unit, fmt in _DATE_FORMATS.items()}.get(col.datetime_format or "", 1)
    values = (pd.to_numeric(seconds).clip(col.minimum, col.maximum) / unit).round() * unit
    stamps = pd.Timestamp(0) + pd.to_timedelta(values, unit="s")
    if col.dtype.startswith("datetime64"):
        return stamps.astype(col.dtype)
    return stamps.dt.strftime(col.datetime_format or _DATE_FORMATS[1]).where(values.notna(), None)


def _categorical(series: Any, name: str, dtype: str) -> ColumnSpec:
    kinds = {type(v).__name__ for v in series.head(1000)}
    if len(kinds) > 1:
        raise DataError(f"column {name!r} mixes value types ({', '.join(sorted(kinds))}); make it one type")
    if kinds == {"str"}:
        _reject_disguised_text(series, name)
    categories = sorted(series.unique().tolist(), key=str)
    if len(categories) > MAX_CATEGORIES:
        raise DataError(
            f"column {name!r} has {len(categories)} distinct values: it looks like an identifier or free "
            f"text, not a category (limit {MAX_CATEGORIES}); drop it before training"
        )
    return ColumnSpec(name, "categorical", dtype, categories=categories)


def _reject_disguised_text(series: Any, name: str) -> None:
    """A CSV column of dates, or of numbers with a few words among them ("?", "n/a"), reaches us as text;
    modelling it as categories would be silently wrong, so say what it is."""
    import pandas as pd

    sample = series.head(1000)
    if all(_ISO_DATE.fullmatch(v) for v in sample):
        raise DataError(f"column {name!r} holds dates (e.g. {sample.iloc[0]!r}), which table families do not model "
                        "yet; convert or drop it")
    counts = series.value_counts()  # parse each distinct value once, not every row
    words = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce").isna().to_numpy()
    n_words = int(counts[words].sum())
    if 0 < n_words <= len(series) / 2:  # mostly numbers: the words are placeholders or typos
        examples = ", ".join(map(repr, sorted(counts.index[words].tolist(), key=str)[:5]))
        raise DataError(f"column {name!r} mixes numbers and text ({n_words} of {len(series)} values are not "
                        f"numbers, e.g. {examples}); make it one type")
