"""Tables in and out: reading CSVs with clear errors, schema inference, restoring dtypes and ranges.

The schema is what a table family saves beside its weights, so that generated rows come back with the
training data's column order, dtypes, categories and value ranges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gensdk._canonical import sha256_hex
from gensdk.errors import DataError, RequestError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ColumnSpec", "TableSchema", "fingerprint", "read_table"]

ColumnKind = Literal["continuous", "integer", "categorical", "boolean"]

# A text column where most values are distinct is an identifier (names, ids), not a category to model.
MAX_CATEGORIES = 500


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

    @property
    def numeric(self) -> bool:
        return self.kind in ("continuous", "integer")


@dataclass
class TableSchema:
    columns: list[ColumnSpec]

    @classmethod
    def infer(cls, frame: pd.DataFrame) -> TableSchema:
        _reject_missing(frame)
        return cls([_infer_column(frame[name], str(name)) for name in frame.columns])

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise RequestError(f"unknown column {name!r}; the table has: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.columns]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> TableSchema:
        return cls([ColumnSpec(**c) for c in data])

    def check_value(self, name: str, value: Any) -> Any:
        """Validate one condition value against the column; returns it in the column's own type."""
        col = self.column(name)
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
            if col.numeric:
                values = frame[col.name].clip(col.minimum, col.maximum)
                frame[col.name] = values.round() if col.kind == "integer" else values
            if col.kind != "categorical":
                frame[col.name] = frame[col.name].astype(col.dtype)
        return frame[self.names]


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


def _categorical(series: Any, name: str, dtype: str) -> ColumnSpec:
    kinds = {type(v).__name__ for v in series.head(1000)}
    if len(kinds) > 1:
        raise DataError(f"column {name!r} mixes value types ({', '.join(sorted(kinds))}); make it one type")
    categories = sorted(series.unique().tolist(), key=str)
    if len(categories) > MAX_CATEGORIES:
        raise DataError(
            f"column {name!r} has {len(categories)} distinct values: it looks like an identifier or free "
            f"text, not a category (limit {MAX_CATEGORIES}); drop it before training"
        )
    return ColumnSpec(name, "categorical", dtype, categories=categories)
